from .clip_teacher import CLIPTeacher
from .cvlp import CVLP

__all__ = ['CLIPTeacher', 'CVLP']
