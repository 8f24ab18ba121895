"""Opt-in demo components; ``import vlltr_mm`` does not import them.

Configs that use the demo CLIP model import this package through
``custom_imports = dict(imports=['vlltr_mm', 'vlltr_mm.demo'])``, which
registers ``vlltr-demo-effnetlite0-minilm`` with open_clip.
"""
from . import demo_clip  # noqa: F401
from .demo_clip_config import register_demo_clip_config

register_demo_clip_config()
