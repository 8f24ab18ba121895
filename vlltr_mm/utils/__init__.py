from .checkpoint import (
    checkpoint_safe_globals,
    register_checkpoint_safe_globals,
)
from .distributed_env import close_distributed, setup_cpu_distributed

__all__ = [
    'checkpoint_safe_globals', 'register_checkpoint_safe_globals',
    'close_distributed', 'setup_cpu_distributed'
]
