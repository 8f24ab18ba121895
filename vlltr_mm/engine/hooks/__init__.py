from .anss_hook import AnchorSentenceSelectionHook  # noqa: F401
from .class_prior_hook import ClassPriorHook, dataset_class_counts  # noqa: F401
