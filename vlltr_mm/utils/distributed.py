"""Process groups and collectives, the one place for both.

**Running on CPU.** Distributed training and testing on machines without CUDA.

MMEngine assumes NCCL and a GPU per process: its PyTorch launcher calls
``torch.cuda.set_device`` and its runner wraps the model in
``DistributedDataParallel(device_ids=[LOCAL_RANK])``; both fail on a
CPU-only machine. :func:`setup_cpu_distributed` switches such a run to the
gloo backend and to :class:`CPUDistributedDataParallel`, so that the same
configs and ``tools/dist_train.sh`` work on CPU (tests, laptops) unchanged.
On a machine with CUDA it does nothing.

**Gathering a batch.** Row-wise gathering of a batch over data-parallel ranks.

Contrastive losses (VL-LTR Eqs. 2-3) compare every local sample with the
*global* batch. :func:`gather_with_grad` concatenates the per-rank rows and,
on backward, hands every rank the summed gradient of its own rows, so each
rank may compute only its local rows of the logits ([B_local, B_global]) and
still receive its share of the gradient of the global loss.

Local batch sizes may differ between ranks (e.g. a ragged last batch): the
sizes are exchanged once with :func:`gather_batch_sizes`, rows are padded to
the largest size for the collective and the padding is dropped again.
Outside a process group, or with one rank, every function is the identity.
"""
import datetime
import gc
import os
from typing import List, Optional

import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch import Tensor


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
    if launcher == 'pytorch' and not dist.is_initialized():
        for key in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
            if key not in os.environ:
                raise RuntimeError(
                    f'--launcher pytorch needs ${key}; start the job with '
                    'tools/dist_train.sh or torchrun.')
        extra = {k: v for k, v in dist_cfg.items() if k != 'backend'}
        if isinstance(extra.get('timeout'), (int, float)):
            extra['timeout'] = datetime.timedelta(seconds=extra['timeout'])
        dist.init_process_group(backend='gloo', **extra)
    return True


def close_distributed() -> None:
    """Tear the process group down before the interpreter exits.

    Left to interpreter shutdown, gloo's worker threads can be destroyed
    while still joinable, which aborts the process ("terminate called
    without an active exception") after a successful run. Objects that
    still hold the group (a DDP reducer inside a runner, whose train loop
    and runner reference each other) are collected first, so the group's
    last reference goes here and not at shutdown; callers drop their
    runner before calling.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()
        gc.collect()

# Backends whose reduce-scatter is used on backward; elsewhere an all-reduce
# of the (small) global gradient followed by slicing gives the same result.
_REDUCE_SCATTER_BACKENDS = ('nccl', 'xccl')

# ``all_gather_single`` supersedes ``all_gather_into_tensor`` in new releases.
_all_gather_flat = getattr(dist, 'all_gather_single', None) or getattr(
    dist, 'all_gather_into_tensor')
_reduce_scatter_flat = getattr(dist, 'reduce_scatter_single', None) or getattr(
    dist, 'reduce_scatter_tensor')


def _world_size(group=None) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def _collective_device(group=None) -> torch.device:
    """Device on which the backend of ``group`` expects its tensors."""
    if dist.get_backend(group) in _REDUCE_SCATTER_BACKENDS:
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def gather_batch_sizes(batch_size: int, group=None) -> List[int]:
    """Local batch size of every rank, in rank order.

    Args:
        batch_size (int): Number of rows on this rank.
        group (ProcessGroup, optional): Process group. Defaults to None
            (the default group).

    Returns:
        List[int]: ``world_size`` sizes; ``[batch_size]`` when not
        distributed.
    """
    world_size = _world_size(group)
    if world_size == 1:
        return [int(batch_size)]
    size = torch.tensor([batch_size],
                        dtype=torch.long,
                        device=_collective_device(group))
    sizes = torch.empty(world_size, dtype=torch.long, device=size.device)
    _all_gather_flat(sizes, size, group=group)
    return sizes.tolist()


def local_row_offset(batch_size: int,
                     sizes: Optional[List[int]] = None,
                     group=None) -> int:
    """Index of this rank's first row in the gathered global batch.

    Args:
        batch_size (int): Number of rows on this rank.
        sizes (List[int], optional): Output of :func:`gather_batch_sizes`,
            to save a collective. Defaults to None (gathered here).
        group (ProcessGroup, optional): Process group. Defaults to None.

    Returns:
        int: Global rows ``[offset, offset + batch_size)`` are this rank's.
    """
    if _world_size(group) == 1:
        return 0
    if sizes is None:
        sizes = gather_batch_sizes(batch_size, group)
    return sum(sizes[:dist.get_rank(group)])


def _check_sizes(x: Tensor, sizes: List[int], group) -> None:
    world_size = dist.get_world_size(group)
    if len(sizes) != world_size:
        raise ValueError(f'sizes has {len(sizes)} entries but the process '
                         f'group has {world_size} ranks.')
    if sizes[dist.get_rank(group)] != x.shape[0]:
        raise ValueError(f'sizes says this rank has '
                         f'{sizes[dist.get_rank(group)]} rows but the '
                         f'tensor has {x.shape[0]}.')


def _valid_rows(sizes: List[int], device: torch.device) -> Tensor:
    """Indices of the real (unpadded) rows in the padded gathered tensor."""
    max_size = max(sizes)
    return torch.cat([
        torch.arange(size, device=device) + rank * max_size
        for rank, size in enumerate(sizes)
    ])


def _all_gather_rows(x: Tensor, sizes: List[int], group) -> Tensor:
    """Concatenate ``x`` of every rank along dim 0 (no autograd)."""
    world_size, max_size = len(sizes), max(sizes)
    x = x.contiguous()
    if x.shape[0] < max_size:
        pad = x.new_zeros((max_size - x.shape[0], ) + tuple(x.shape[1:]))
        x = torch.cat([x, pad])
    out = x.new_empty((world_size * max_size, ) + tuple(x.shape[1:]))
    _all_gather_flat(out, x, group=group)
    if min(sizes) == max_size:
        return out
    return out[_valid_rows(sizes, out.device)]


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward sums the gradients of a rank's
    rows over all ranks (each rank's loss depends on every rank's rows)."""

    @staticmethod
    def forward(ctx, x, sizes, group, reduce_scatter):
        ctx.sizes, ctx.group = sizes, group
        ctx.reduce_scatter = reduce_scatter
        return _all_gather_rows(x, sizes, group)

    @staticmethod
    def backward(ctx, grad):
        sizes, group = ctx.sizes, ctx.group
        rank = dist.get_rank(group)
        if ctx.reduce_scatter:
            max_size = max(sizes)
            padded = grad.new_zeros((len(sizes) * max_size, ) +
                                    tuple(grad.shape[1:]))
            padded[_valid_rows(sizes, grad.device)] = grad
            out = grad.new_empty((max_size, ) + tuple(grad.shape[1:]))
            _reduce_scatter_flat(out, padded, group=group)
            return out[:sizes[rank]], None, None, None
        # Clone: autograd may share ``grad`` with other consumers.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, group=group)
        start = sum(sizes[:rank])
        return grad[start:start + sizes[rank]], None, None, None


def gather_with_grad(x: Tensor,
                     sizes: Optional[List[int]] = None,
                     group=None) -> Tensor:
    """Concatenate ``x`` over ranks along dim 0, differentiably.

    The gradient reaching this rank's ``x`` is the sum over ranks of the
    gradient of each rank's output w.r.t. these rows, i.e. the gradient of
    the *sum* of the per-rank losses. Under DDP, which averages parameter
    gradients, a per-rank loss of ``world_size / B_global`` times the sum of
    its local row losses therefore trains exactly on the global-batch mean.

    Args:
        x (Tensor): Local rows, shape [B_local, ...].
        sizes (List[int], optional): Every rank's B_local, from
            :func:`gather_batch_sizes`. Defaults to None (gathered here).
        group (ProcessGroup, optional): Process group. Defaults to None.

    Returns:
        Tensor: Shape [B_global, ...], ranks in order; ``x`` itself when
        not distributed.
    """
    if _world_size(group) == 1:
        return x
    if sizes is None:
        sizes = gather_batch_sizes(x.shape[0], group)
    _check_sizes(x, sizes, group)
    reduce_scatter = dist.get_backend(group) in _REDUCE_SCATTER_BACKENDS
    return _GatherWithGrad.apply(x, list(sizes), group, reduce_scatter)


@torch.no_grad()
def gather_no_grad(x: Tensor,
                   sizes: Optional[List[int]] = None,
                   group=None) -> Tensor:
    """Concatenate ``x`` over ranks along dim 0 without autograd.

    For constants such as labels or frozen-teacher features.

    Args:
        x (Tensor): Local rows, shape [B_local, ...].
        sizes (List[int], optional): Every rank's B_local. Defaults to None
            (gathered here).
        group (ProcessGroup, optional): Process group. Defaults to None.

    Returns:
        Tensor: Shape [B_global, ...], detached.
    """
    if _world_size(group) == 1:
        return x.detach()
    if sizes is None:
        sizes = gather_batch_sizes(x.shape[0], group)
    _check_sizes(x, sizes, group)
    return _all_gather_rows(x.detach(), list(sizes), group)
