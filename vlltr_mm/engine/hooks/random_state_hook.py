"""Carry the global random states through checkpoints, for exact resumes.

MMEngine saves the weights, optimizer, schedulers and message hub, and on
resume re-seeds every generator from ``randomness.seed``; the global
generators then restart from their epoch-0 state. Whatever draws from them
after the checkpoint (random transforms in the main process, i.e. with
``num_workers=0``, dropout, Mixup / CutMix, random sentence choice) differs
from the uninterrupted run. Saving them with each checkpoint and restoring
them on resume makes the resumed epochs repeat the uninterrupted ones.
"""
import random

import numpy as np
import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save Python / NumPy / torch (CPU and CUDA) random states with every
    checkpoint (``meta['random_state']``) and restore them on resume.

    Only the main process of rank 0 is saved (MMEngine writes checkpoints
    there). With ``randomness.diff_rank_seed=False`` (the default) every
    rank starts from the same seed and draws alike, so rank 0's state is
    restored on every rank; with ``diff_rank_seed=True``, or with another
    number of processes than the saved run, nothing is restored and the
    resumed run is only statistically equivalent. Loader worker processes
    are re-seeded by MMEngine each epoch in both runs alike.
    """

    # Restores in before_train, after every other hook's before_train and
    # after Runner.resume() re-seeded (it does when the saved seed differs).
    priority = 'LOWEST'

    def __init__(self):
        self._pending = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        state = dict(
            python=random.getstate(),
            numpy=np.random.get_state(),
            torch=torch.get_rng_state(),
            world_size=get_world_size())
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint.setdefault('meta', {})['random_state'] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
            return  # load_from / testing: the run starts from its seed
        state = checkpoint.get('meta', {}).get('random_state')
        if state is None:
            return
        diff_rank = getattr(runner, '_randomness_cfg',
                            {}).get('diff_rank_seed', False)
        if diff_rank or state['world_size'] != get_world_size():
            runner.logger.warning(
                'Random states of the checkpoint not restored (different '
                'process count or diff_rank_seed): the resumed epochs '
                'draw other random numbers than an uninterrupted run.')
            return
        self._pending = state

    def before_train(self, runner) -> None:
        state, self._pending = self._pending, None
        if state is None:
            return
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'])
        cuda = state.get('cuda')
        if cuda is not None and torch.cuda.is_available() and len(
                cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
