from .anss import lin_loss_scores, select_anchors, select_pool  # noqa: F401
from .class_prior import ClassPrior, check_class_counts  # noqa: F401
from .distributed import (  # noqa: F401
    gather_batch_sizes,
    gather_no_grad,
    gather_with_grad,
    local_row_offset,
)
from .open_clip_loader import (  # noqa: F401
    build_open_clip,
    load_clip_state_dict,
    read_clip_weights,
    share_open_clip,
)
from .open_clip_registry import register_open_clip_configs  # noqa: F401
from .open_clip_tower import OpenCLIPTower  # noqa: F401

register_open_clip_configs()
from . import demo_clip  # noqa: E402,F401
