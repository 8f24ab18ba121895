from . import class_text, samplers  # noqa: F401
from .annotation_io import count_classes_from_file  # noqa: F401
from .inaturalist2018 import INaturalist2018  # noqa: F401
from .long_tail_list_dataset import LongTailListDataset  # noqa: F401
