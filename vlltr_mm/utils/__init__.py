from .checkpoint import (
    checkpoint_safe_globals,
    register_checkpoint_safe_globals,
)
from .distributed import (
    close_distributed,
    gather_batch_sizes,
    gather_no_grad,
    gather_with_grad,
    local_row_offset,
    setup_cpu_distributed,
)

__all__ = [
    'checkpoint_safe_globals', 'register_checkpoint_safe_globals',
    'close_distributed', 'setup_cpu_distributed', 'gather_batch_sizes',
    'gather_no_grad', 'gather_with_grad', 'local_row_offset'
]
