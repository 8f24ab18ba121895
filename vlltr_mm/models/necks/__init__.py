from .open_clip_text import OpenCLIPTextEncoder  # noqa: F401
