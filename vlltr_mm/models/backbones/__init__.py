from .open_clip_visual import OpenCLIPVisual  # noqa: F401
