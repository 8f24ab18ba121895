"""Build an open_clip model once and fill it from a tag or a local file.

:class:`~vlltr_mm.models.backbones.OpenCLIPVisual` and
:class:`~vlltr_mm.models.necks.OpenCLIPTextEncoder` each keep one tower of
the model returned by :func:`build_open_clip`. Callers that need both towers
of the same weights build the model once and hand it to both (see
:func:`share_open_clip`).

The model is always built as open_clip's ``CustomTextCLIP`` (text tower
under ``.text``), so both towers are self-contained modules whatever the
config; standard CLIP checkpoints are converted on load.
"""
import contextlib
import logging
import os
import zipfile
from typing import Dict, Optional, Tuple

import open_clip
import torch
from mmengine.logging import print_log
from open_clip.convert import convert_state_dict
from open_clip.model import (
    convert_to_custom_text_state_dict,
    resize_pos_embed,
    resize_text_pos_embed,
)
from torch import nn

#: Non-weight entries found in OpenAI's TorchScript CLIP archives.
OPENAI_EXTRA_KEYS = ('input_resolution', 'context_length', 'vocab_size')
#: Keys under which training frameworks nest the weights in a checkpoint.
NESTING_KEYS = ('state_dict', 'model')
_WEIGHT_SUFFIXES = ('.pt', '.pth', '.bin', '.ckpt', '.safetensors')
_MAX_LISTED_KEYS = 10


def _is_torchscript(path: str) -> bool:
    # TorchScript archives are zip files with a ``constants.pkl`` entry;
    # ``torch.save`` zips never have one.
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(
            name.rsplit('/', 1)[-1] == 'constants.pkl'
            for name in archive.namelist())


def _unwrap_state_dict(obj, path: str) -> Dict[str, torch.Tensor]:
    """Find the weights in a loaded checkpoint object."""
    while isinstance(obj, dict):
        nested = [k for k in NESTING_KEYS if isinstance(obj.get(k), dict)]
        if not nested:
            break
        obj = obj[nested[0]]
    if not isinstance(obj, dict) or not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise TypeError(
            f'{path} holds no state dict (a mapping of names to tensors, '
            f'optionally nested under one of {NESTING_KEYS}).')
    # DataParallel / DDP checkpoints prefix every key with 'module.'.
    return {
        k[len('module.'):] if k.startswith('module.') else k: v
        for k, v in obj.items()
    }


def read_clip_weights(path: str) -> Tuple[Dict[str, torch.Tensor], bool]:
    """Read CLIP weights from a local file.

    Accepted files: OpenAI TorchScript archives (``torch.jit.save``), plain
    ``torch.save`` state dicts, possibly nested under ``'state_dict'`` or
    ``'model'`` and possibly with a ``'module.'`` key prefix, and
    ``.safetensors`` files. Files are read with ``weights_only=True``.

    Args:
        path (str): The file.

    Returns:
        tuple[dict[str, Tensor], bool]: The state dict (OpenAI's non-weight
        entries dropped) and whether the file was a TorchScript archive.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        TypeError: If the file holds no state dict.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'CLIP weights file not found: {path}')
    is_jit = False
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        state_dict = load_file(path, device='cpu')
    elif _is_torchscript(path):
        is_jit = True
        state_dict = torch.jit.load(path, map_location='cpu').state_dict()
    else:
        state_dict = _unwrap_state_dict(
            torch.load(path, map_location='cpu', weights_only=True), path)
    state_dict = {
        k: v
        for k, v in state_dict.items() if k not in OPENAI_EXTRA_KEYS
    }
    return state_dict, is_jit


def _listed(keys) -> str:
    keys = sorted(keys)
    shown = ', '.join(keys[:_MAX_LISTED_KEYS])
    more = len(keys) - _MAX_LISTED_KEYS
    return shown + (f', ... and {more} more' if more > 0 else '')


def load_clip_state_dict(model: nn.Module,
                         state_dict: Dict[str, torch.Tensor],
                         source: str = 'state dict') -> None:
    """Load CLIP weights into an open_clip ``CustomTextCLIP``, strictly.

    Standard-CLIP key layouts are moved under ``text.``, scalar / 1-d
    logit scales are reshaped and position embeddings of another size are
    interpolated, with open_clip's own converters.

    Args:
        model (nn.Module): Model built by :func:`build_open_clip`.
        state_dict (dict[str, Tensor]): The weights.
        source (str): Where the weights come from, for error messages.
            Defaults to ``'state dict'``.

    Raises:
        RuntimeError: If keys are missing or unexpected, or shapes differ;
            the message lists them.
    """
    state_dict = convert_state_dict(model, dict(state_dict))
    # Traced / scripted models also save non-persistent buffers such as the
    # causal mask; they are rebuilt by the model, so drop them.
    derived = {'attn_mask'} | {
        f'{prefix}.{name}' if prefix else name
        for prefix, module in model.named_modules()
        for name in module._non_persistent_buffers_set
    }
    state_dict = {k: v for k, v in state_dict.items() if k not in derived}
    if 'positional_embedding' in state_dict and not hasattr(
            model, 'positional_embedding'):
        state_dict = convert_to_custom_text_state_dict(state_dict)
    for name in ('logit_scale', 'logit_bias'):
        param = getattr(model, name, None)
        if param is not None and name in state_dict:
            state_dict[name] = state_dict[name].reshape(param.shape)
    if getattr(model, 'logit_bias', None) is not None and \
            'logit_bias' not in state_dict:
        # A CLIP checkpoint loaded for a SigLIP-style config starts at 0.
        state_dict['logit_bias'] = torch.zeros_like(model.logit_bias)
    resize_pos_embed(state_dict, model)
    resize_text_pos_embed(state_dict, model)

    expected = model.state_dict()
    missing = expected.keys() - state_dict.keys()
    unexpected = state_dict.keys() - expected.keys()
    mismatched = [
        f'{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}'
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f'missing keys ({len(missing)}): '
                            f'{_listed(missing)}')
        if unexpected:
            problems.append(f'unexpected keys ({len(unexpected)}): '
                            f'{_listed(unexpected)}')
        if mismatched:
            problems.append(f'shape mismatches, file vs model '
                            f'({len(mismatched)}): {_listed(mismatched)}')
        raise RuntimeError(f'Weights from {source} do not fit the open_clip '
                           f'model: ' + '; '.join(problems))
    model.load_state_dict(state_dict, strict=True)


class _DropRandomInitWarning(logging.Filter):
    # open_clip warns "initialized randomly" for any model created without
    # a tag, although we load the weights file right after creation.

    def filter(self, record: logging.LogRecord) -> bool:
        return 'initialized randomly' not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init_warning(active: bool):
    root, drop = logging.getLogger(), _DropRandomInitWarning()
    if active:
        root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def _looks_like_path(value: str) -> bool:
    return os.sep in value or '/' in value or value.endswith(
        _WEIGHT_SUFFIXES)


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
            a local weights file (see :func:`read_clip_weights`). ``None``
            keeps the random initialisation, also of timm / HF towers.
            Defaults to None.
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
    tag, state_dict, is_jit = None, None, False
    if pretrained is not None:
        clean_name = model_name.replace('/', '-')
        if os.path.isfile(pretrained):
            state_dict, is_jit = read_clip_weights(pretrained)
        elif open_clip.get_pretrained_cfg(clean_name, pretrained):
            tag = pretrained
        elif _looks_like_path(pretrained):
            raise FileNotFoundError(
                f'CLIP weights file not found: {pretrained}')
        else:
            raise ValueError(
                f"pretrained='{pretrained}' is neither a file nor a "
                f"pretrained tag of open_clip model '{model_name}' (its "
                f'tags: {open_clip.list_pretrained_tags_by_model(clean_name)}'
                ')')
        if quick_gelu is None and tag is not None:
            quick_gelu = open_clip.get_pretrained_cfg(
                clean_name, tag).get('quick_gelu', False)
        elif quick_gelu is None and is_jit:
            quick_gelu = True

    kwargs = dict(force_custom_text=True, pretrained_image=False,
                  pretrained_text=False)
    if quick_gelu:
        kwargs['force_quick_gelu'] = True
    elif quick_gelu is not None:
        kwargs['quick_gelu'] = False
    with _quiet_random_init_warning(state_dict is not None):
        model = open_clip.create_model(model_name, pretrained=tag, **kwargs)
    if state_dict is not None:
        load_clip_state_dict(model, state_dict, source=pretrained)
        print_log(f"Loaded CLIP weights of '{model_name}' from {pretrained}",
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
