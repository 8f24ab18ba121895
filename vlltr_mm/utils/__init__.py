from .checkpoint import (
    checkpoint_safe_globals,
    register_checkpoint_safe_globals,
    strip_module_prefix,
)
from .distributed import (
    close_distributed,
    gather_batch_sizes,
    gather_no_grad,
    gather_with_grad,
    local_row_offset,
    setup_cpu_distributed,
)
from .files import atomic_write, file_sha256

__all__ = [
    'checkpoint_safe_globals', 'register_checkpoint_safe_globals',
    'close_distributed', 'setup_cpu_distributed', 'gather_batch_sizes',
    'gather_no_grad', 'gather_with_grad', 'local_row_offset', 'atomic_write',
    'file_sha256', 'strip_module_prefix'
]
