"""Randomness of anchor sentence selection, isolated from training.

Two guarantees: (1) AnSS leaves the global Python / NumPy / torch random
states as it found them, so a run that computes the anchors trains exactly
like one that reuses them; (2) a random pool pipeline (e.g. the training
augmentation of the authors' iNat pool) gives every pool image the same
random numbers whatever the dataloader workers, batch size or number of
ranks: image ``k`` of the pool is transformed under global generators
seeded from ``(seed, k)``. MMEngine's ``worker_init_fn`` seeds per worker,
and torch's ``fork_rng`` covers torch alone; neither gives per-sample
seeds, hence this module.
"""
import contextlib
import random
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset


@contextlib.contextmanager
def preserved_global_rng(cuda: bool = True) -> Iterator[None]:
    """Restore the Python, NumPy and torch global random states on exit.

    Args:
        cuda (bool): Also the CUDA devices' states (once CUDA is
            initialised). Defaults to True.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if (
        cuda and torch.cuda.is_available()
        and torch.cuda.is_initialized()) else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def item_seed(seed: int, position: int) -> int:
    """The 32-bit seed of pool image ``position`` (a SeedSequence mix, so
    neighbouring positions and seeds give unrelated streams)."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1)[0])


class SeededItems(Dataset):
    """``dataset[indices[k]]`` transformed under generators seeded from
    ``(seed, k)``; the caller's global random states are kept.

    Args:
        dataset (Dataset): The pool's dataset (with its pipeline).
        indices (Sequence[int]): Pool position ``k`` -> dataset row (rows
            may repeat, e.g. after a draw with replacement).
        seed (int): The pool seed.
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int], seed: int):
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        s = item_seed(self.seed, k)
        # CPU generators only: a pipeline runs on the CPU, and
        # torch.manual_seed would reseed every CUDA device as well.
        with preserved_global_rng(cuda=False):
            random.seed(s)
            np.random.seed(s)
            torch.default_generator.manual_seed(s)
            return self.dataset[self.indices[k]]
