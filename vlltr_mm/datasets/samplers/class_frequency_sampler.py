"""Samplers that re-weight a long-tailed training set by class frequency.

VL-LTR trains both stages with square-root sampling (paper §4.3): every
image of class ``c`` is drawn with probability proportional to
``n_c ** -0.5``, so class ``c`` as a whole is drawn in proportion to
``sqrt(n_c)``. Class-aware (class-balanced) sampling is the same machinery
with exponent 1: every class is then equally likely.
"""
import math
from typing import Iterator, Optional, Sized

import numpy as np
import torch
from mmengine.dist import get_dist_info, sync_random_seed
from mmpretrain.registry import DATA_SAMPLERS
from torch.utils.data import Sampler


def get_dataset_labels(dataset: Sized) -> np.ndarray:
    """Single-label class index of every sample that ``dataset[i]`` returns.

    Uses ``dataset.get_gt_labels()`` when the object has it. Otherwise it
    unwraps the dataset wrappers of MMEngine and PyTorch:
    ``ConcatDataset`` (``.datasets``, concatenated), ``RepeatDataset``
    (``.times``, tiled), ``ClassBalancedDataset`` (``.repeat_indices``),
    ``Subset`` (``.indices``) and any other wrapper with a ``.dataset`` of
    the same length, which is taken to keep the index order. Lazily
    initialised datasets are initialised here.

    Args:
        dataset (Sized): The dataset or dataset wrapper.

    Returns:
        np.ndarray: int64 labels of shape ``[len(dataset)]``.
    """
    if hasattr(dataset, 'full_init'):
        dataset.full_init()
    if hasattr(dataset, 'get_gt_labels'):
        labels = dataset.get_gt_labels()
    elif hasattr(dataset, 'datasets'):
        labels = np.concatenate(
            [get_dataset_labels(d) for d in dataset.datasets])
    elif hasattr(dataset, 'dataset'):
        inner = get_dataset_labels(dataset.dataset)
        if hasattr(dataset, 'repeat_indices'):
            labels = inner[np.asarray(dataset.repeat_indices, dtype=np.int64)]
        elif hasattr(dataset, 'times'):
            labels = np.tile(inner, dataset.times)
        elif hasattr(dataset, 'indices'):
            labels = inner[np.asarray(dataset.indices, dtype=np.int64)]
        elif len(dataset) == len(inner):
            labels = inner
        else:
            raise TypeError(
                f'Cannot map the indices of {type(dataset).__name__} '
                f'(length {len(dataset)}) onto its inner dataset (length '
                f'{len(inner)}); give it a get_gt_labels() method.')
    else:
        raise TypeError(
            f'{type(dataset).__name__} has no get_gt_labels() and is not a '
            'known dataset wrapper (.dataset / .datasets).')
    labels = np.asarray(labels)
    if labels.size == 0:
        labels = labels.reshape(0).astype(np.int64)
    if labels.ndim != 1 or labels.dtype.kind not in 'iu':
        raise ValueError(
            'Class-frequency sampling needs one integer label per sample, '
            f'got an array of dtype {labels.dtype} and shape {labels.shape}.')
    if len(labels) != len(dataset):
        raise ValueError(f'Got {len(labels)} labels for a dataset of '
                         f'{len(dataset)} samples.')
    if labels.size and labels.min() < 0:
        raise ValueError('Labels must be non-negative class indices.')
    return labels.astype(np.int64)


@DATA_SAMPLERS.register_module()
class ClassFrequencySampler(Sampler):
    """Draw samples with replacement, weighted by ``n_c ** -power``.

    ``n_c`` is the number of samples of class ``c`` among the indices of
    ``dataset`` (so a ``RepeatDataset`` changes nothing and repeats from a
    ``ClassBalancedDataset`` count). Class ``c`` is drawn with probability
    proportional to ``n_c ** (1 - power)``: ``power=0`` is plain sampling
    with replacement, 0.5 square-root sampling, 1 class-balanced sampling.

    Each epoch, every rank draws the same global sequence of ``total_size``
    indices from a generator seeded with ``seed + epoch``, and rank ``r``
    keeps positions ``r, r + world_size, ...`` of it, so the ranks' shards
    are disjoint parts of one draw, as with MMEngine's ``DefaultSampler``.

    Args:
        dataset (Sized): The dataset; see :func:`get_dataset_labels` for how
            labels are read.
        power (float): Exponent of the inverse class count in the sample
            weight.
        seed (int, optional): Base random seed; must be the same on every
            rank. None takes one from ``mmengine.dist.sync_random_seed``.
            Defaults to None.
        num_samples (int, optional): Number of draws per epoch over all
            ranks, before rounding up. None means ``len(dataset)``.
            Defaults to None.
        round_up (bool): Whether to draw extra samples so that every rank
            gets the same number, ``ceil(num_samples / world_size)``.
            Otherwise rank ``r`` gets
            ``ceil((num_samples - r) / world_size)``. Defaults to True.
        shuffle (bool): Whether the epoch's draws come in random order, as
            with MMEngine's ``DefaultSampler``. False yields the same draws
            sorted by dataset index (before the rank split), so which
            samples are drawn, and so the class frequencies, do not change.
            Accepted so that a stock sampler config
            (``dict(type=..., shuffle=True)``) can switch to this sampler
            by its ``type`` alone. Defaults to True.
    """

    def __init__(self,
                 dataset: Sized,
                 power: float,
                 seed: Optional[int] = None,
                 num_samples: Optional[int] = None,
                 round_up: bool = True,
                 shuffle: bool = True) -> None:
        self.rank, self.world_size = get_dist_info()
        self.dataset = dataset
        self.power = float(power)
        self.shuffle = bool(shuffle)
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0
        self.round_up = round_up

        labels = torch.from_numpy(get_dataset_labels(dataset))
        if labels.numel() == 0:
            raise ValueError('Cannot sample from an empty dataset.')
        # torch.multinomial refuses more categories than this.
        if labels.numel() > 2**24:
            raise ValueError(
                f'{labels.numel()} samples exceed the 2**24 that '
                'torch.multinomial can weight.')
        counts = torch.bincount(labels).double()
        self.class_counts = counts
        self.weights = counts[labels].pow(-self.power)

        self.num_samples = (
            len(labels) if num_samples is None else int(num_samples))
        if self.num_samples <= 0:
            raise ValueError(
                f'num_samples must be positive, got {num_samples}.')
        if round_up:
            self.total_size = math.ceil(
                self.num_samples / self.world_size) * self.world_size
        else:
            self.total_size = self.num_samples

    def global_indices(self) -> torch.Tensor:
        """The epoch's draw shared by all ranks.

        Returns:
            torch.Tensor: int64 dataset indices of shape ``[total_size]``.
        """
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        indices = torch.multinomial(
            self.weights, self.total_size, replacement=True, generator=g)
        return indices if self.shuffle else indices.sort().values

    def __iter__(self) -> Iterator[int]:
        """Iterate over this rank's share of the epoch's draw."""
        indices = self.global_indices()[self.rank::self.world_size]
        return iter(indices.tolist())

    def __len__(self) -> int:
        """Number of indices this rank yields per epoch."""
        return math.ceil((self.total_size - self.rank) / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the draw of ``epoch``.

        Args:
            epoch (int): Epoch number.
        """
        self.epoch = epoch


@DATA_SAMPLERS.register_module()
class SquareRootSampler(ClassFrequencySampler):
    """Square-root sampling: class ``c`` drawn in proportion to
    ``sqrt(n_c)`` (VL-LTR §4.3, both stages).

    See :class:`ClassFrequencySampler` for the seeding and sharding.

    Args:
        dataset (Sized): The dataset.
        seed (int, optional): Base random seed. Defaults to None.
        num_samples (int, optional): Draws per epoch over all ranks.
            Defaults to None (``len(dataset)``).
        round_up (bool): Pad to a multiple of the world size.
            Defaults to True.
        shuffle (bool): Random order of the draws (False: sorted by
            index, same draws). Defaults to True.
    """

    def __init__(self,
                 dataset: Sized,
                 seed: Optional[int] = None,
                 num_samples: Optional[int] = None,
                 round_up: bool = True,
                 shuffle: bool = True) -> None:
        super().__init__(
            dataset,
            power=0.5,
            seed=seed,
            num_samples=num_samples,
            round_up=round_up,
            shuffle=shuffle)


@DATA_SAMPLERS.register_module()
class ClassAwareSampler(ClassFrequencySampler):
    """Class-balanced sampling: every class present is equally likely.

    Sample weights are ``1 / n_c``, which gives the same distribution as
    drawing a class uniformly and then one of its samples uniformly. See
    :class:`ClassFrequencySampler` for the seeding and sharding.

    Args:
        dataset (Sized): The dataset.
        seed (int, optional): Base random seed. Defaults to None.
        num_samples (int, optional): Draws per epoch over all ranks.
            Defaults to None (``len(dataset)``).
        round_up (bool): Pad to a multiple of the world size.
            Defaults to True.
        shuffle (bool): Random order of the draws (False: sorted by
            index, same draws). Defaults to True.
    """

    def __init__(self,
                 dataset: Sized,
                 seed: Optional[int] = None,
                 num_samples: Optional[int] = None,
                 round_up: bool = True,
                 shuffle: bool = True) -> None:
        super().__init__(
            dataset,
            power=1.0,
            seed=seed,
            num_samples=num_samples,
            round_up=round_up,
            shuffle=shuffle)
