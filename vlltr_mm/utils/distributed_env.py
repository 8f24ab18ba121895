"""Distributed training and testing on machines without CUDA.

MMEngine assumes NCCL and a GPU per process: its PyTorch launcher calls
``torch.cuda.set_device`` and its runner wraps the model in
``DistributedDataParallel(device_ids=[LOCAL_RANK])``; both fail on a
CPU-only machine. :func:`setup_cpu_distributed` switches such a run to the
gloo backend and to :class:`CPUDistributedDataParallel`, so that the same
configs and ``tools/dist_train.sh`` work on CPU (tests, laptops) unchanged.
On a machine with CUDA it does nothing.
"""
import datetime
import os

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` for modules that live on the CPU.

    The runner passes ``device_ids=[LOCAL_RANK]``, which
    ``DistributedDataParallel`` rejects for CPU modules; it is dropped here
    when the module has no CUDA parameters.

    Args:
        module (nn.Module): The model to wrap.
        device_ids (list, optional): Ignored for CPU modules.
            Defaults to None.
        **kwargs: Passed to :class:`MMDistributedDataParallel`.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        on_cuda = any(p.is_cuda for p in module.parameters())
        if not on_cuda:
            device_ids = None
            kwargs.pop('output_device', None)
        kwargs.setdefault('broadcast_buffers', False)
        super().__init__(module=module, device_ids=device_ids, **kwargs)


def setup_cpu_distributed(cfg: Config, launcher: str) -> bool:
    """Prepare ``cfg`` for a distributed run when CUDA is unavailable.

    With ``launcher='pytorch'`` (torchrun) the gloo process group is
    initialised here from the ``RANK`` / ``WORLD_SIZE`` / ``MASTER_ADDR`` /
    ``MASTER_PORT`` environment, so MMEngine's CUDA-only set-up is skipped.
    Other launchers (slurm, mpi) get ``env_cfg.dist_cfg.backend='gloo'``.

    Args:
        cfg (Config): The full config; modified in place.
        launcher (str): ``'none'``, ``'pytorch'``, ``'slurm'`` or ``'mpi'``.

    Returns:
        bool: Whether the config was switched to CPU distributed mode.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    dist_cfg['backend'] = 'gloo'
    if cfg.get('model_wrapper_cfg') is None:
        cfg.model_wrapper_cfg = dict(
            type='CPUDistributedDataParallel',
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    if launcher == 'pytorch' and not torch_dist.is_initialized():
        for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
            if key not in os.environ:
                raise RuntimeError(
                    f'--launcher pytorch needs ${key}; start the job with '
                    'tools/dist_train.sh or torchrun.')
        extra = {k: v for k, v in dist_cfg.items() if k != 'backend'}
        if isinstance(extra.get('timeout'), (int, float)):
            extra['timeout'] = datetime.timedelta(seconds=extra['timeout'])
        torch_dist.init_process_group(backend='gloo', **extra)
    return True


def close_distributed() -> None:
    """Tear the process group down before the interpreter exits.

    Left to interpreter shutdown, gloo's worker threads can be destroyed
    while still joinable, which aborts the process ("terminate called
    without an active exception") after a successful run.
    """
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
