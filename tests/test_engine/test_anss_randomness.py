"""AnSS randomness: per-image seeds for a random pool pipeline, and the
global random states left as they were."""
import random

import numpy as np
import pytest
import torch
from _anss_runs import (
    AUTHORS_POOL,
    TRAIN_PIPELINE,
    anss_hook,
    dataset_cfg,
    lgr_cfg,
)
from mmengine.dataset import pseudo_collate
from mmengine.runner import Runner
from mmpretrain.registry import DATASETS
from torch.utils.data import DataLoader

from vlltr_mm.engine.hooks.anss_randomness import (
    SeededItems,
    item_seed,
    preserved_global_rng,
)

pytestmark = pytest.mark.usefixtures('one_thread')


def _states():
    return (random.getstate(), np.random.get_state()[1].copy(),
            torch.get_rng_state())


def _assert_states(before):
    after = _states()
    assert after[0] == before[0]
    np.testing.assert_array_equal(after[1], before[1])
    assert torch.equal(after[2], before[2])


def test_preserved_global_rng_restores_all_three():
    torch.manual_seed(3)
    before = _states()
    with preserved_global_rng():
        random.random(), np.random.rand(), torch.rand(3)
        random.seed(1), np.random.seed(1), torch.manual_seed(1)
    _assert_states(before)
    # also when the body raises
    with pytest.raises(KeyError):
        with preserved_global_rng():
            torch.rand(3)
            raise KeyError('x')
    _assert_states(before)


def test_item_seeds_differ_by_seed_and_position():
    seeds = {item_seed(s, k) for s in range(3) for k in range(50)}
    assert len(seeds) == 150
    assert item_seed(0, 7) == item_seed(0, 7)


def _images(items, workers=0):
    loader = DataLoader(items, batch_size=3, num_workers=workers,
                        collate_fn=pseudo_collate)
    return torch.cat([torch.stack(b['inputs']) for b in loader])


def test_seeded_items_repeat_whatever_the_order_and_workers(assets):
    dataset = DATASETS.build(dataset_cfg(assets, 'train', TRAIN_PIPELINE))
    rows = [0, 0, 0, 5, 5, 9, 13]
    items = SeededItems(dataset, rows, seed=0)
    first = _images(items)
    assert torch.equal(_images(items, workers=2), first)
    # item k does not depend on which items came before it, and the
    # caller's generators are neither used nor moved
    before = _states()
    assert torch.equal(items[4]['inputs'], first[4])
    assert torch.equal(items[0]['inputs'], first[0])
    _assert_states(before)
    # repeated rows are augmented differently, another seed changes all
    assert not torch.equal(first[0], first[1])
    other = _images(SeededItems(dataset, rows, seed=1))
    assert not any(torch.equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize('pool', [None, AUTHORS_POOL])
def test_computing_anchors_leaves_the_training_rng_alone(
        assets, tmp_path, pool):
    cfg = lgr_cfg(assets, tmp_path, train_pipeline=TRAIN_PIPELINE,
                  pool=pool)
    runner = Runner.from_cfg(cfg)
    hook = anss_hook(runner)
    before = _states()
    hook.before_train(runner)
    assert hook.reused is False
    _assert_states(before)
    # reusing the artifact: the same states again
    hook.before_train(runner)
    assert hook.reused is True
    _assert_states(before)
