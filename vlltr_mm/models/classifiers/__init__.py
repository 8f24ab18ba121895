from .clip_teacher import CLIPTeacher
from .cvlp import CVLP
from .image_classifier import VLLTRImageClassifier
from .strict_load import StrictLoadMixin

__all__ = ['CLIPTeacher', 'CVLP', 'StrictLoadMixin', 'VLLTRImageClassifier']
