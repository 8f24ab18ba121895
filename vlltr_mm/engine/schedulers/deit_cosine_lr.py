"""The learning-rate schedule of the authors' VL-LTR runs, per epoch.

The authors train with DeiT's loop: timm 0.3.2's ``CosineLRScheduler``
(``create_scheduler``: ``t_initial`` = epochs, ``cycle_limit`` 1, linear
warm-up from ``warmup_lr`` that *replaces* the cosine during the warm-up
epochs) stepped with ``lr_scheduler.step(epoch)`` *after* each epoch, so
epoch ``e >= 1`` trains at the schedule's value for ``e - 1`` and epoch 0
at the value the scheduler set at construction (``warmup_lr``, or the base
lr without warm-up).

MMEngine's ``LinearLR`` + ``CosineAnnealingLR`` cannot express this: its
chainable cosine starts its phase at its own ``begin``, so a cosine after a
5-epoch warm-up runs over 45 epochs from the base lr, while timm's keeps
the phase of epoch 0 (at epoch 27 of 50 the two differ by 14 %). Without a
warm-up, ``CosineAnnealingLR(begin=1, T_max=max_epochs, eta_min=0)`` is the
same schedule, and the LGR configs use it.
"""
import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from mmpretrain.registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class DeiTCosineLR(LRSchedulerMixin, _ParamScheduler):
    """Per-epoch cosine schedule with a replacing linear warm-up, as the
    authors' DeiT/timm loop applies it.

    With base lr ``b`` of a parameter group (its ``initial_lr``, so
    ``paramwise_cfg`` multipliers carry over), the schedule value at ``t``
    is ``warmup_lr + t * (b - warmup_lr) / warmup_epochs`` for
    ``t < warmup_epochs``, else ``eta_min + (b - eta_min) / 2 *
    (1 + cos(pi * t / T_max))``, and ``eta_min`` from ``t = T_max`` on.
    Epoch ``e`` trains at the value for ``t = max(e - 1, 0)`` when
    ``lag_one_epoch`` (the authors' loop), else ``t = e``.

    Args:
        optimizer (Optimizer | OptimWrapper): Wrapped optimizer.
        T_max (int): Length of the cosine in epochs, counted from epoch 0
            (timm's ``t_initial``: the run's epochs).
        warmup_epochs (int): Epochs of linear warm-up (timm's
            ``warmup_t``; the authors' ``main.py`` default is 5).
            Defaults to 0.
        warmup_lr (float): Absolute lr the warm-up starts from, the same
            for every group (timm's ``warmup_lr_init``; the authors'
            default 1e-6). Defaults to 1e-6.
        eta_min (float): Final lr (timm's ``lr_min``). Defaults to 0.
        lag_one_epoch (bool): Step after each epoch as the authors' loop
            does (epochs 0 and 1 share a value). Defaults to True.
        begin (int): First epoch the schedule applies to. Defaults to 0.
        end (int): Epoch it stops at. Defaults to INF.
        last_step (int): Resume index. Defaults to -1.
        by_epoch (bool): Must be True: the schedule is per epoch.
            Defaults to True.
        verbose (bool): Log each update. Defaults to False.
    """

    def __init__(self,
                 optimizer,
                 T_max: int,
                 warmup_epochs: int = 0,
                 warmup_lr: float = 1e-6,
                 eta_min: float = 0.0,
                 lag_one_epoch: bool = True,
                 begin: int = 0,
                 end: int = INF,
                 last_step: int = -1,
                 by_epoch: bool = True,
                 verbose: bool = False):
        if not by_epoch:
            raise ValueError('DeiTCosineLR is an epoch schedule (the '
                             "authors' loop steps it once per epoch); "
                             'set by_epoch=True and do not convert it to '
                             'iterations.')
        if not isinstance(T_max, int) or T_max <= 0:
            raise ValueError(f'T_max must be a positive int, got {T_max!r}')
        if not isinstance(warmup_epochs, int) or not (0 <= warmup_epochs
                                                      < T_max):
            raise ValueError(f'warmup_epochs must be an int in [0, T_max), '
                             f'got {warmup_epochs!r}')
        if warmup_lr < 0 or eta_min < 0:
            raise ValueError(f'warmup_lr and eta_min must be >= 0, got '
                             f'{warmup_lr} and {eta_min}')
        self.T_max = T_max
        self.warmup_epochs = warmup_epochs
        self.warmup_lr = warmup_lr
        self.eta_min = eta_min
        self.lag_one_epoch = lag_one_epoch
        super().__init__(
            optimizer,
            begin=begin,
            end=end,
            last_step=last_step,
            by_epoch=by_epoch,
            verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls, *args, **kwargs):
        """Refuse ``convert_to_iter_based``: the schedule is per epoch."""
        raise ValueError('DeiTCosineLR cannot be converted to an iteration '
                         'schedule; remove convert_to_iter_based.')

    def value_at(self, base: float, t: int) -> float:
        """The schedule's lr for step ``t`` of a group with base lr ``base``
        (timm 0.3.2 ``CosineLRScheduler._get_lr``)."""
        if t < self.warmup_epochs:
            return self.warmup_lr + t * (base - self.warmup_lr) / (
                self.warmup_epochs)
        if t >= self.T_max:
            return self.eta_min
        return self.eta_min + 0.5 * (base - self.eta_min) * (
            1 + math.cos(math.pi * t / self.T_max))

    def _get_value(self) -> list:
        t = self.last_step
        if self.lag_one_epoch:
            t = max(t - 1, 0)
        return [self.value_at(base, t) for base in self.base_values]
