"""The adapter between open_clip models and MMPretrain modules.

:mod:`.factory` builds open_clip models and loads CLIP weights,
:mod:`.tower` wraps one tower of such a model as an MMPretrain module,
:mod:`.registry` makes the tiny test configs in ``configs/`` known to
open_clip and :mod:`.weight_fit` says why weights do not fit a model.
"""
from .factory import (  # noqa: F401
    build_open_clip,
    load_clip_weights,
    share_open_clip,
)
from .registry import register_open_clip_configs  # noqa: F401
from .tower import OpenCLIPTower  # noqa: F401

register_open_clip_configs()
