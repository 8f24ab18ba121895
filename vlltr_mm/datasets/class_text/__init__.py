from .class_text_dataset import ClassTextDataset  # noqa: F401
from .corpus import ClassTextCorpus  # noqa: F401

__all__ = ['ClassTextCorpus', 'ClassTextDataset']
