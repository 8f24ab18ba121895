"""The AnSS image pool: the authors' iNat draw (square-root weights over the
first K images per class, training augmentation), its seeding and key."""
import os.path as osp

import numpy as np
import pytest
import torch
from _anss_runs import (
    AUTHORS_POOL,
    TRAIN_PIPELINE,
    built_corpus,
    lgr_cfg,
    log_text,
    train,
)
from mmengine.config import Config
from mmengine.runner import Runner

from vlltr_mm.engine.hooks.anss_artifact import artifact_key, config_sha256
from vlltr_mm.engine.hooks.anss_checkpoint import load_stage1_tower
from vlltr_mm.engine.hooks.anss_pool import build_pool, embed_pool
from vlltr_mm.engine.hooks.anss_pool_spec import check_pool_spec

pytestmark = pytest.mark.usefixtures('one_thread')
# 99.9 % quantile of the chi-square distribution with 4 degrees of freedom.
CHI2_4DOF_999 = 18.467


def _list_labels(path):
    return np.array([int(line.split()[-1]) for line in open(path)
                     if line.strip()])


def _first_k(labels, k):
    """Rows of each class's first k images, in list order (by hand)."""
    seen, rows = {}, []
    for i, y in enumerate(labels.tolist()):
        seen[y] = seen.get(y, 0) + 1
        if seen[y] <= k:
            rows.append(i)
    return np.array(rows)


def _authors_draw(labels, chosen, seed):
    """Their select loader: len(chosen) multinomial draws with replacement,
    weight 1 / sqrt(n_c) (n_c counted among the chosen), generator seeded
    with seed + epoch 0 (float64 weights, as our sampler)."""
    n_c = np.bincount(labels[chosen])
    weights = torch.tensor(1 / np.sqrt(n_c[labels[chosen]]))
    g = torch.Generator()
    g.manual_seed(seed)
    pos = torch.multinomial(weights, len(chosen), replacement=True,
                            generator=g)
    return chosen[pos.numpy()]


def test_sqrt_draw_equals_the_authors_multinomial(assets, tmp_path):
    cfg = lgr_cfg(assets, tmp_path, train_pipeline=TRAIN_PIPELINE)
    labels = _list_labels(osp.join(assets['data'], 'ImageNet_LT_train.txt'))
    chosen = _first_k(labels, 3)
    assert np.bincount(labels[chosen]).tolist() == [3, 3, 3, 2]
    draws = []
    for seed in (0, 1, 7):
        pool = build_pool(check_pool_spec(dict(AUTHORS_POOL, seed=seed)),
                          cfg, assets['names'])
        expected = _authors_draw(labels, chosen, seed)
        np.testing.assert_array_equal(pool.indices, expected)
        np.testing.assert_array_equal(pool.labels, labels[expected])
        assert pool.seed == seed
        draws.append(pool.indices.tolist())
    # a multiset: rows repeat, and another seed draws other rows
    assert len(set(draws[0])) < len(draws[0]) == len(chosen)
    assert draws[0] != draws[1] != draws[2]
    # the pool's images go through the train dataloader's pipeline
    assert pool.pipeline_sha256 == config_sha256(TRAIN_PIPELINE)
    # without draw: each chosen image once, in list order
    pool = build_pool(check_pool_spec(dict(AUTHORS_POOL, draw=None)), cfg,
                      assets['names'])
    np.testing.assert_array_equal(pool.indices, chosen)


def _write_list(path, counts):
    """A list file of fake images (not read here), classes interleaved."""
    labels = np.random.default_rng(0).permutation(
        np.repeat(np.arange(len(counts)), counts))
    path.write_text(''.join(f'c{y}/{i}.png {y}\n'
                            for i, y in enumerate(labels)))
    return labels


def test_sqrt_draw_class_frequencies(tmp_path):
    counts = [400, 100, 25, 4, 1]
    _write_list(tmp_path / 'list.txt', counts)
    # No serialisation: its gc.collect() would cost 0.4 s per build.
    dataset = dict(type='LongTailListDataset', ann_file='list.txt',
                   data_root=str(tmp_path), check_files=False,
                   serialize_data=False)
    hist = np.zeros(5)
    for seed in range(100):
        spec = check_pool_spec(
            dict(split='train', max_per_class=50, draw='sqrt', seed=seed,
                 dataset=dataset, pipeline=[dict(type='PackInputs')]))
        pool = build_pool(spec, Config(), [f'c{c}' for c in range(5)])
        assert len(pool.indices) == 50 + 50 + 25 + 4 + 1
        hist += np.bincount(pool.labels, minlength=5)
    # class c is drawn in proportion to sqrt(n_c) of the 50-capped subset
    chosen = np.minimum(counts, 50)
    probs = np.sqrt(chosen) / np.sqrt(chosen).sum()
    expected = probs * hist.sum()
    assert ((hist - expected)**2 / expected).sum() < CHI2_4DOF_999
    # each image once would give shares n_c / 130: far off
    plain = chosen / chosen.sum() * hist.sum()
    assert ((hist - plain)**2 / plain).sum() > 100 * CHI2_4DOF_999


def test_augmented_multiset_embeds_each_draw_afresh(assets, tmp_path):
    cfg = lgr_cfg(assets, tmp_path, train_pipeline=TRAIN_PIPELINE)
    model = Runner.from_cfg(cfg).model
    pool = build_pool(check_pool_spec(AUTHORS_POOL), cfg, assets['names'])
    backbone = load_stage1_tower(assets['ckpt'], 'backbone')

    def embed(workers, batch):
        return embed_pool(model, backbone, pool, 16, batch, workers)

    first = embed(0, 4)
    # per-image seeds: workers and batching change nothing
    torch.testing.assert_close(embed(2, 3), first, rtol=0, atol=0)
    # the same image drawn twice is augmented twice, differently
    rows = pool.indices.tolist()
    twice = next(i for i in rows if rows.count(i) > 1)
    a, b = [k for k, i in enumerate(rows) if i == twice][:2]
    assert not torch.allclose(first[a], first[b])


def _why(runner):
    log = log_text(runner)
    return log[log.index('AnSS: computing anchors'):].splitlines()[0]


def test_same_seed_same_anchors_other_seed_other_draws(assets, tmp_path):
    def run(work, **pool):
        cfg = lgr_cfg(assets, tmp_path / work, train_pipeline=TRAIN_PIPELINE,
                      pool=dict(AUTHORS_POOL, **pool))
        cfg.log_level = 'INFO'
        runner, hook = train(cfg)
        art = torch.load(tmp_path / work / 'anss_anchors.pth',
                         weights_only=True)
        return runner, hook, art

    _, _, art = run('a')
    assert art['meta']['pool_options'] == (
        'split=train max_per_class=3 mode=first draw=sqrt pipeline=train '
        'seed=0 dataset=split')
    assert art['meta']['num_pool_images'] == 11
    assert art['meta']['num_pool_distinct_images'] < 11
    _, hook, again = run('b')
    assert hook.reused is False
    assert torch.equal(again['scores'], art['scores'])
    assert torch.equal(again['indices'], art['indices'])
    assert torch.equal(again['anchors'], art['anchors'])
    # another seed in the same work dir: other draws, recomputed
    runner, hook, other = run('a', seed=1)
    assert hook.reused is False
    why = _why(runner)
    assert 'pool_sha256' in why and 'pool_options' in why
    assert why.count('!=') == 2
    assert not torch.equal(other['scores'], art['scores'])
    # the seed also drives the augmentation: same images, other scores
    _, _, once = run('c', draw=None)
    runner, _, once_other = run('c', draw=None, seed=1)
    assert once['meta']['pool_sha256'] == once_other['meta']['pool_sha256']
    assert 'pool_options' in _why(runner) and _why(runner).count('!=') == 1
    assert not torch.equal(once['scores'], once_other['scores'])


def test_key_changes_with_each_pool_option(assets, tmp_path):
    cfg = lgr_cfg(assets, tmp_path, train_pipeline=TRAIN_PIPELINE)
    corpus = built_corpus(assets)

    def key(**pool):
        built = build_pool(check_pool_spec(pool), cfg, assets['names'])
        return artifact_key(corpus, assets['ckpt'], {}, cfg.model, built,
                            'anss', 8)

    base = key()

    def changed(**pool):
        other = key(**pool)
        return sorted(k for k in base if other[k] != base[k])

    assert changed(draw='sqrt') == ['pool_options', 'pool_sha256']
    assert changed(pipeline='train') == ['pool_options',
                                         'pool_pipeline_sha256']
    # nothing random: the seed only changes the options entry
    assert changed(seed=5) == ['pool_options']
    assert changed(max_per_class=2) == ['pool_options', 'pool_sha256']
    assert changed(split='train') == ['pool_list_sha256', 'pool_options',
                                      'pool_sha256']
    assert changed(**AUTHORS_POOL) == [
        'pool_list_sha256', 'pool_options', 'pool_pipeline_sha256',
        'pool_sha256']
