"""Make the model configs shipped with vlltr_mm known to open_clip.

The JSON files in ``configs/`` follow open_clip's own config
schema (``embed_dim``, ``vision_cfg``, ``text_cfg``). They are tiny random
CLIPs used by the tests and by CPU smoke runs:

- ``vlltr-tiny-rn``: a ModifiedResNet image tower (layers ``[1, 1, 1, 1]``,
  width 8, 32 px input, attention pooling as in CLIP RN50).
- ``vlltr-tiny-vit``: a ViT image tower (32 px input, 8 px patches, one
  block of width 16 with 2 heads).

Both use the same one-layer text transformer of width 16 with CLIP's
vocabulary (49408) and context length (77), so the real CLIP tokenizer can
feed them, and both embed into D = 16.
"""
from pathlib import Path
from typing import List

import open_clip

OPEN_CLIP_CONFIG_DIR = Path(__file__).parent / 'configs'


def register_open_clip_configs(config_dir: Path = OPEN_CLIP_CONFIG_DIR
                               ) -> List[str]:
    """Add a directory of open_clip model configs to open_clip's registry.

    Registering is idempotent: a directory that is already known is not
    added (and rescanned) again.

    Args:
        config_dir (Path): Directory holding ``<model_name>.json`` files.
            Defaults to the configs packaged with vlltr_mm.

    Returns:
        list[str]: The model names defined by ``config_dir``, now usable as
        ``model_name`` of :func:`open_clip.create_model`.

    Raises:
        FileNotFoundError: If ``config_dir`` is not a directory.
    """
    config_dir = Path(config_dir)
    if not config_dir.is_dir():
        raise FileNotFoundError(
            f'open_clip config directory not found: {config_dir}')
    names = sorted(p.stem for p in config_dir.glob('*.json'))
    known = set(open_clip.list_models())
    if not all(name in known for name in names):
        open_clip.add_model_config(config_dir)
    return names
