"""Tests for the class-frequency (square-root / class-aware) samplers."""
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.dataset import (
    ClassBalancedDataset,
    ConcatDataset,
    RepeatDataset,
    pseudo_collate,
)
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATA_SAMPLERS
from torch.utils.data import ConcatDataset as TorchConcatDataset
from torch.utils.data import DataLoader, Subset

from vlltr_mm.datasets.samplers import (
    ClassAwareSampler,
    ClassFrequencySampler,
    SquareRootSampler,
    get_dataset_labels,
)

# Class c has COUNTS[c] samples; sqrt(COUNTS) = [20, 10, 5, 2, 1].
COUNTS = np.array([400, 100, 25, 4, 1])
# 99.9 % quantile of the chi-square distribution with 4 degrees of freedom.
CHI2_4DOF_999 = 18.467


class ToyDataset(BaseDataset):
    """A long-tailed dataset whose samples are only their labels."""

    def __init__(self, labels, **kwargs):
        self._labels = list(labels)
        super().__init__(ann_file='', **kwargs)

    def load_data_list(self):
        return [dict(gt_label=int(y)) for y in self._labels]


class NoLabels:
    """A sized object that is neither a dataset nor a wrapper."""

    def __len__(self):
        return 3


def toy_labels(counts=COUNTS, seed=0):
    labels = np.repeat(np.arange(len(counts)), counts)
    # Shuffle so that a class is not one contiguous index range.
    return np.random.default_rng(seed).permutation(labels)


def class_histogram(sampler, labels, epochs):
    hist = np.zeros(labels.max() + 1)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        hist += np.bincount(labels[list(sampler)], minlength=len(hist))
    return hist


def chi_square(observed, probs):
    expected = probs * observed.sum()
    return float(((observed - expected)**2 / expected).sum())


def test_weights_are_inverse_class_count_powers():
    labels = toy_labels()
    sampler = SquareRootSampler(ToyDataset(labels), seed=0)
    expected = 1 / np.sqrt(COUNTS[labels])
    np.testing.assert_allclose(sampler.weights.numpy(), expected)
    aware = ClassAwareSampler(ToyDataset(labels), seed=0)
    np.testing.assert_allclose(aware.weights.numpy(), 1 / COUNTS[labels])
    np.testing.assert_array_equal(aware.class_counts.numpy(), COUNTS)


def test_determinism_and_set_epoch():
    dataset = ToyDataset(toy_labels())
    a = SquareRootSampler(dataset, seed=3)
    b = SquareRootSampler(dataset, seed=3)
    first = list(a)
    assert len(first) == len(a) == len(dataset)
    assert all(0 <= i < len(dataset) for i in first)
    assert first == list(b)
    # A sampler's draw does not change between passes of one epoch.
    assert first == list(a)
    a.set_epoch(1)
    second = list(a)
    assert second != first
    a.set_epoch(0)
    assert list(a) == first
    # seed + epoch is the generator seed, as in MMEngine's DefaultSampler.
    c = SquareRootSampler(dataset, seed=4)
    assert list(c) == second
    assert list(SquareRootSampler(dataset, seed=5)) != first


def test_num_samples_overrides_epoch_length():
    dataset = ToyDataset(toy_labels())
    sampler = SquareRootSampler(dataset, seed=0, num_samples=37)
    assert len(sampler) == 37
    assert len(list(sampler)) == 37
    sampler = SquareRootSampler(dataset, seed=0, round_up=False)
    assert len(list(sampler)) == len(sampler) == len(dataset)


def test_square_root_class_frequencies():
    labels = toy_labels()
    sampler = SquareRootSampler(
        ToyDataset(labels), seed=0, num_samples=40_000)
    hist = class_histogram(sampler, labels, epochs=10)
    probs = np.sqrt(COUNTS) / np.sqrt(COUNTS).sum()
    # 400k draws: the rarest class expects ~10.5k, so 1 sigma is ~1 %.
    rel_err = np.abs(hist / hist.sum() - probs) / probs
    assert rel_err.max() < 0.03, rel_err
    assert chi_square(hist, probs) < CHI2_4DOF_999
    # Without re-sampling the class shares would be far from sqrt(n_c).
    plain = COUNTS / COUNTS.sum()
    assert chi_square(hist, plain) > 1000 * CHI2_4DOF_999


def test_class_aware_is_near_uniform():
    labels = toy_labels()
    sampler = ClassAwareSampler(ToyDataset(labels), seed=1, num_samples=20_000)
    hist = class_histogram(sampler, labels, epochs=5)
    probs = np.full(len(COUNTS), 1 / len(COUNTS))
    rel_err = np.abs(hist / hist.sum() - probs) / probs
    assert rel_err.max() < 0.03, rel_err
    assert chi_square(hist, probs) < CHI2_4DOF_999
    # Within a class every sample is equally likely: the single image of
    # class 4 gets a fifth of all draws.
    only = int(np.flatnonzero(labels == 4)[0])
    sampler.set_epoch(0)
    share = np.mean(np.asarray(list(sampler)) == only)
    assert abs(share - 0.2) < 0.02


def test_general_power_and_registry():
    labels = toy_labels()
    sampler = DATA_SAMPLERS.build(
        dict(
            type='ClassFrequencySampler',
            dataset=ToyDataset(labels),
            power=0.0,
            seed=0,
            num_samples=50_000))
    hist = class_histogram(sampler, labels, epochs=2)
    probs = COUNTS / COUNTS.sum()
    assert chi_square(hist, probs) < CHI2_4DOF_999
    for name in ('SquareRootSampler', 'ClassAwareSampler'):
        built = DATA_SAMPLERS.build(
            dict(type=name, dataset=ToyDataset(labels), seed=0))
        assert isinstance(built, ClassFrequencySampler)


def test_unwrap_repeat_and_class_balanced_datasets():
    labels = toy_labels()
    inner = ToyDataset(labels, lazy_init=True)
    repeated = RepeatDataset(inner, times=3, lazy_init=True)
    np.testing.assert_array_equal(
        get_dataset_labels(repeated), np.tile(labels, 3))
    sampler = SquareRootSampler(repeated, seed=0)
    assert len(sampler) == 3 * len(labels)
    np.testing.assert_array_equal(sampler.class_counts.numpy(), 3 * COUNTS)

    balanced = ClassBalancedDataset(
        ToyDataset(labels, lazy_init=True), oversample_thr=0.1,
        lazy_init=True)
    got = get_dataset_labels(balanced)
    # Reference: the label MMEngine itself returns for each wrapped index.
    reference = [
        balanced.get_data_info(i)['gt_label'] for i in range(len(balanced))
    ]
    np.testing.assert_array_equal(got, reference)
    assert len(got) > len(labels)  # the tail classes were repeated
    sampler = ClassAwareSampler(balanced, seed=0)
    assert max(sampler) < len(balanced)

    concat = ConcatDataset(
        [ToyDataset(labels[:7]), ToyDataset([4, 4])], lazy_init=True)
    np.testing.assert_array_equal(
        get_dataset_labels(concat), np.concatenate([labels[:7], [4, 4]]))
    # PyTorch's ConcatDataset can nest MMEngine wrappers.
    nested = TorchConcatDataset([concat, repeated])
    np.testing.assert_array_equal(
        get_dataset_labels(nested),
        np.concatenate([labels[:7], [4, 4], np.tile(labels, 3)]))
    subset = Subset(ToyDataset(labels), [5, 0, 5])
    np.testing.assert_array_equal(
        get_dataset_labels(subset), labels[[5, 0, 5]])


def test_bad_datasets_raise():
    with pytest.raises(TypeError, match='no get_gt_labels'):
        SquareRootSampler(NoLabels(), seed=0)
    with pytest.raises(ValueError, match='empty dataset'):
        SquareRootSampler(ToyDataset([], serialize_data=False), seed=0)
    with pytest.raises(ValueError, match='num_samples must be positive'):
        SquareRootSampler(ToyDataset([0, 1]), seed=0, num_samples=0)

    class MultiLabel(ToyDataset):

        def get_gt_labels(self):
            return np.ones((len(self), 3), dtype=np.int64)

    with pytest.raises(ValueError, match='one integer label per sample'):
        ClassAwareSampler(MultiLabel([0, 1]), seed=0)

    class Shrink:
        dataset = ToyDataset([0, 1, 2])

        def __len__(self):
            return 2

    with pytest.raises(TypeError, match='Cannot map the indices'):
        get_dataset_labels(Shrink())


def test_in_torch_dataloader():
    labels = toy_labels()
    dataset = ToyDataset(labels)
    sampler = SquareRootSampler(dataset, seed=7)
    loader = DataLoader(
        dataset,
        batch_size=64,
        sampler=sampler,
        num_workers=2,
        collate_fn=pseudo_collate)
    seen = []
    for batch in loader:
        seen.extend(zip(batch['sample_idx'], batch['gt_label']))
    indices, got = map(np.asarray, zip(*seen))
    np.testing.assert_array_equal(indices, list(sampler))
    np.testing.assert_array_equal(got, labels[indices])
    assert len(loader) == -(-len(dataset) // 64)


def test_runner_builds_sampler_from_config():
    labels = toy_labels()
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loader = Runner.build_dataloader(
            dict(
                dataset=ToyDataset(labels),
                sampler=dict(type='SquareRootSampler'),
                batch_size=50,
                collate_fn=dict(type='pseudo_collate')),
            seed=11)
    assert isinstance(loader.sampler, SquareRootSampler)
    assert loader.sampler.seed == 11
    assert len(loader) == -(-len(labels) // 50)


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_process_sharding(tmp_path):
    """Two real gloo ranks (torch.distributed.run) share one draw."""
    script = osp.join(osp.dirname(__file__), '_dist_sampler_script.py')
    out = tmp_path / 'out'
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=repo, OMP_NUM_THREADS='1')
    cmd = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
        '--master_addr=127.0.0.1', f'--master_port={_free_port()}', script,
        str(out)
    ]
    proc = subprocess.run(
        cmd, env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = [torch.load(out / f'rank{r}.pt') for r in range(2)]
    labels = data[0]['labels']

    for case in ('seeded', 'synced_seed', 'odd_round_up', 'odd_no_round_up'):
        r0, r1 = data[0][case], data[1][case]
        # Both ranks drew the same global sequence ...
        assert torch.equal(r0['global'], r1['global']), case
        glob = r0['global']
        # ... and each took the positions r, r + 2, ... of it, so the
        # shards are disjoint as positions and together cover the draw.
        assert torch.equal(r0['shard'], glob[0::2]), case
        assert torch.equal(r1['shard'], glob[1::2]), case
        assert len(r0['shard']) + len(r1['shard']) == len(glob)
        assert r0['len'] == len(r0['shard'])
        assert r1['len'] == len(r1['shard'])
    assert data[0]['synced_seed']['seed'] == data[1]['synced_seed']['seed']
    assert len(data[0]['seeded']['global']) == len(labels)  # even: no pad
    assert [data[r]['odd_round_up']['len'] for r in range(2)] == [4, 4]
    assert [data[r]['odd_no_round_up']['len'] for r in range(2)] == [4, 3]

    # Class-aware over both ranks and several epochs: near-uniform.
    hist = torch.bincount(
        labels[torch.cat([data[0]['aware'], data[1]['aware']])]).double()
    probs = np.full(len(hist), 1 / len(hist))
    rel_err = np.abs(hist.numpy() / hist.sum().item() - probs) / probs
    assert rel_err.max() < 0.05, rel_err
    assert chi_square(hist.numpy(), probs) < CHI2_4DOF_999


@pytest.mark.parametrize('name', ['SquareRootSampler', 'ClassAwareSampler'])
def test_stock_sampler_arguments(name):
    """A stock ``DefaultSampler`` config switches by ``type`` alone:
    ``shuffle``, ``seed`` and ``round_up`` keep their meaning (round-up
    across ranks: test_two_process_sharding)."""
    labels = toy_labels()
    stock = dict(type=name, shuffle=True, seed=3, round_up=True)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loader = Runner.build_dataloader(
            dict(dataset=ToyDataset(labels), sampler=stock, batch_size=50,
                 collate_fn=dict(type='pseudo_collate')),
            seed=11)
    sampler = loader.sampler
    assert sampler.seed == 3  # the config's seed beats the runner's
    default = DATA_SAMPLERS.build(
        dict(type=name, dataset=ToyDataset(labels), seed=3))
    shuffled = list(sampler)
    # shuffle=True is the default: the very same draws, so the same class
    # frequencies.
    assert shuffled == list(default)
    ordered = DATA_SAMPLERS.build(
        dict(type=name, dataset=ToyDataset(labels), seed=3, shuffle=False))
    # shuffle=False: the same draws, in index order.
    assert list(ordered) == sorted(shuffled)
    np.testing.assert_array_equal(
        np.bincount(labels[list(ordered)], minlength=len(COUNTS)),
        np.bincount(labels[shuffled], minlength=len(COUNTS)))
    assert shuffled != sorted(shuffled)
