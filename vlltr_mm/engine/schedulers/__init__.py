from .deit_cosine_lr import DeiTCosineLR  # noqa: F401
