from .anss_hook import AnchorSentenceSelectionHook  # noqa: F401
from .atomic_checkpoint_hook import AtomicCheckpointHook  # noqa: F401
from .checkpoint_check_hook import CheckpointCheckHook  # noqa: F401
from .class_prior_hook import ClassPriorHook, dataset_class_counts  # noqa: F401
from .finite_loss_hook import FiniteLossHook  # noqa: F401
from .random_state_hook import RandomStateHook  # noqa: F401
from .run_summary_hook import RunSummaryHook  # noqa: F401
