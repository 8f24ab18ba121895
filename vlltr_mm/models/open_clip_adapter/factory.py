"""Build an open_clip model once and fill it through open_clip's factory.

:class:`~vlltr_mm.models.backbones.OpenCLIPVisual` and
:class:`~vlltr_mm.models.necks.OpenCLIPTextEncoder` each keep one tower of
the model returned by :func:`build_open_clip`. Callers that need both towers
of the same weights build the model once and hand it to both (see
:func:`share_open_clip`).

The model is always built as open_clip's ``CustomTextCLIP`` (text tower
under ``.text``), so both towers are self-contained modules whatever the
config. Weights are read and converted by ``open_clip.create_model``
(pretrained tags) and ``open_clip.load_checkpoint`` (local files: key
layouts, logit-scale shapes, position-embedding resizing). This module adds
only what open_clip lacks: OpenAI TorchScript archives as local files and
their QuickGELU default, checkpoints nested under ``'model'`` (re-saved as
a plain temporary file for open_clip to read), and errors that name the
file and list the keys.
"""
import contextlib
import logging
import os
import tempfile
import warnings
import zipfile
from typing import Optional, Tuple

import open_clip
import torch
from mmengine.logging import print_log
from torch import nn

from vlltr_mm.utils.checkpoint import strip_module_prefix

from .weight_fit import derived_keys, fit_problems

#: Keys under which training frameworks nest the weights in a checkpoint.
NESTING_KEYS = ('state_dict', 'model')
_WEIGHT_SUFFIXES = ('.pt', '.pth', '.bin', '.ckpt', '.safetensors')


def _is_torchscript(path: str) -> bool:
    # TorchScript archives are zip files with a ``constants.pkl`` entry;
    # ``torch.save`` zips never have one.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(
            name.rsplit('/', 1)[-1] == 'constants.pkl'
            for name in archive.namelist())


def _open_clip_readable(path: str, is_jit: bool, tmp_dir: str) -> str:
    """A file that ``open_clip.load_checkpoint`` reads as the weights.

    open_clip reads safetensors, TorchScript and ``torch.save`` state dicts
    (plain or under ``'state_dict'``); other nestings are unwrapped and
    saved once as a plain state dict in ``tmp_dir``.
    """
    if is_jit or path.endswith('.safetensors'):
        return path
    # mmap: only the pickled structure is read here, not the tensors.
    obj = torch.load(path, map_location='cpu', weights_only=True,
                     mmap=zipfile.is_zipfile(path))
    state_dict = obj
    while isinstance(state_dict, dict):
        nested = [k for k in NESTING_KEYS
                  if isinstance(state_dict.get(k), dict)]
        if not nested:
            break
        state_dict = state_dict[nested[0]]
    if not isinstance(state_dict, dict) or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise TypeError(
            f'{path} holds no state dict (a mapping of names to tensors, '
            f'optionally nested under one of {NESTING_KEYS}).')
    if state_dict is obj or state_dict is obj.get('state_dict'):
        return path
    plain = os.path.join(tmp_dir, 'clip_weights.pth')
    torch.save(strip_module_prefix(state_dict), plain)
    return plain


def _fit_check(source: str):
    """A load-state-dict pre-hook that checks keys and shapes first.

    It sees the state dict after open_clip's conversions, drops the
    non-persistent buffers that traced / scripted models also save (the
    model rebuilds them, e.g. the causal mask) and raises one error that
    names ``source`` and lists every missing, unexpected and mis-shaped key
    (torch's own message stops at the first kind and names no file).
    """

    def hook(model, state_dict, prefix, *args) -> None:
        for key in ({'attn_mask'} | derived_keys(model)) & state_dict.keys():
            del state_dict[key]
        problems = fit_problems(model.state_dict(), state_dict)
        if problems:
            raise RuntimeError(
                f'Weights from {source} do not fit the open_clip model: ' +
                '; '.join(problems))

    return hook


def load_clip_weights(model: nn.Module, path: str) -> None:
    """Load a local CLIP weights file with ``open_clip.load_checkpoint``.

    Accepted files: OpenAI TorchScript archives (``torch.jit.save``), plain
    ``torch.save`` state dicts, possibly nested under ``'state_dict'`` or
    ``'model'`` and possibly with a ``'module.'`` key prefix, and
    ``.safetensors`` files. Only TorchScript archives are unpickled without
    ``weights_only`` (they are programs; torch has no restricted reader).

    Args:
        model (nn.Module): Model built by :func:`build_open_clip`.
        path (str): The weights file.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        TypeError: If the file holds no state dict.
        RuntimeError: If keys are missing or unexpected, or shapes differ;
            the message names the file and lists them.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'CLIP weights file not found: {path}')
    is_jit = _is_torchscript(path)
    handle = model.register_load_state_dict_pre_hook(_fit_check(path))
    try:
        with tempfile.TemporaryDirectory() as tmp_dir, \
                warnings.catch_warnings():
            # torch.load hands TorchScript archives to torch.jit.load and
            # says so; that is the intended route here.
            warnings.filterwarnings('ignore', message='.*TorchScript')
            open_clip.load_checkpoint(
                model, _open_clip_readable(path, is_jit, tmp_dir),
                strict=True, weights_only=not is_jit)
    finally:
        handle.remove()


class _DropRandomInitWarning(logging.Filter):
    # open_clip warns "initialized randomly" for every model created without
    # a tag. Here either a weights file is loaded right after creation or
    # the weights come from a checkpoint loaded later (load_from, resume,
    # AnSS's stage-1 file), which open_clip cannot know; RunSummaryHook
    # warns when a run starts from random towers with no checkpoint.

    def filter(self, record: logging.LogRecord) -> bool:
        return 'initialized randomly' not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init_warning():
    # open_clip logs through the root logger.
    root, drop = logging.getLogger(), _DropRandomInitWarning()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _resolve_pretrained(model_name: str, pretrained: str
                        ) -> Tuple[Optional[str], Optional[dict]]:
    """Split ``pretrained`` into (local file, open_clip tag config)."""
    clean_name = model_name.replace('/', '-')
    if os.path.isfile(pretrained):
        return pretrained, None
    tag_cfg = open_clip.get_pretrained_cfg(clean_name, pretrained)
    if tag_cfg:
        return None, tag_cfg
    if os.sep in pretrained or '/' in pretrained or pretrained.endswith(
            _WEIGHT_SUFFIXES):
        raise FileNotFoundError(f'CLIP weights file not found: {pretrained}')
    raise ValueError(
        f"pretrained='{pretrained}' is neither a file nor a pretrained tag "
        f"of open_clip model '{model_name}' (its tags: "
        f'{open_clip.list_pretrained_tags_by_model(clean_name)})')


def build_open_clip(model_name: str,
                    pretrained: Optional[str] = None,
                    quick_gelu: Optional[bool] = None) -> nn.Module:
    """Create an open_clip model (``CustomTextCLIP`` layout), fp32 on CPU.

    Args:
        model_name (str): Any open_clip model name (``'RN50'``,
            ``'ViT-B-16'``, timm-tower configs, ``'vlltr-tiny-rn'``, ...)
            or an ``'hf-hub:'`` / ``'local-dir:'`` source.
        pretrained (str, optional): An open_clip pretrained tag of
            ``model_name`` such as ``'openai'`` (downloaded by open_clip) or
            a local weights file (see :func:`load_clip_weights`). ``None``
            keeps the random initialisation, also of timm / HF towers,
            without open_clip's "initialized randomly" warning (the weights
            usually come from a checkpoint loaded later). Defaults to None.
        quick_gelu (bool, optional): Use QuickGELU activations. ``None``
            decides automatically: as the pretrained tag was trained, True
            for OpenAI TorchScript archives (all OpenAI CLIPs use it), else
            as ``model_name``'s config says. Defaults to None.

    Returns:
        nn.Module: The model, in train mode.

    Raises:
        FileNotFoundError: If ``pretrained`` names a file that is missing.
        ValueError: If ``pretrained`` is neither a file nor a known tag.
    """
    path = tag_cfg = None
    if pretrained is not None:
        path, tag_cfg = _resolve_pretrained(model_name, pretrained)
    if quick_gelu is None and tag_cfg is not None:
        quick_gelu = tag_cfg.get('quick_gelu', False)
    elif quick_gelu is None and path is not None:
        # open_clip's configs default to GELU; OpenAI trained QuickGELU.
        quick_gelu = _is_torchscript(path) or None

    kwargs = dict(force_custom_text=True, pretrained_image=False,
                  pretrained_text=False)
    if quick_gelu:
        kwargs['force_quick_gelu'] = True
    elif quick_gelu is not None:
        kwargs['quick_gelu'] = False
    with _quiet_random_init_warning():
        model = open_clip.create_model(
            model_name, pretrained=pretrained if tag_cfg else None, **kwargs)
    if pretrained is None:
        print_log(f"open_clip '{model_name}' built with random weights "
                  '(pretrained=None)', logger='current', level=logging.DEBUG)
    if path is not None:
        load_clip_weights(model, path)
        print_log(f"Loaded CLIP weights of '{model_name}' from {path}",
                  logger='current')
    return model


def share_open_clip(visual_cfg: dict, text_cfg: dict) -> Tuple[dict, dict]:
    """Let a visual backbone config and a text neck config share one model.

    When both configs ask for the same ``model_name``, ``pretrained`` and
    ``quick_gelu`` and neither carries a ``clip_model`` yet, the model is
    built once and passed to both as ``clip_model``, so the weights file is
    read (and the model allocated) once instead of twice.

    Args:
        visual_cfg (dict): Config of an ``OpenCLIPVisual``.
        text_cfg (dict): Config of an ``OpenCLIPTextEncoder``.

    Returns:
        tuple[dict, dict]: Plain-dict copies of the configs, with the shared
        ``clip_model`` added when applicable.
    """
    visual_cfg, text_cfg = dict(visual_cfg), dict(text_cfg)
    keys = ('model_name', 'pretrained', 'quick_gelu')
    same = all(visual_cfg.get(k) == text_cfg.get(k) for k in keys)
    unbuilt = visual_cfg.get('clip_model') is None and \
        text_cfg.get('clip_model') is None
    if same and unbuilt and visual_cfg.get('model_name') is not None:
        clip_model = build_open_clip(
            visual_cfg['model_name'], visual_cfg.get('pretrained'),
            visual_cfg.get('quick_gelu'))
        visual_cfg['clip_model'] = clip_model
        text_cfg['clip_model'] = clip_model
    return visual_cfg, text_cfg
