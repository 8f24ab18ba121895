import copy
import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner, set_random_seed
from mmpretrain.registry import DATA_SAMPLERS, DATASETS
from mmpretrain.utils import register_all_modules
from PIL import Image

import vlltr_mm  # noqa: F401  (registers everything)
from vlltr_mm.datasets.class_text import ClassTextCorpus, ClassTextDataset

register_all_modules(init_default_scope=True)

COUNTS = {'cat': 7, 'dog': 3}
TEMPLATES = ['a photo of a {}.', 'a blurry photo of a {}.']


def write_images(root):
    """``root/{class}/{i}.png``: a real folder dataset for CustomDataset."""
    rng = np.random.default_rng(0)
    for name, n in COUNTS.items():
        os.makedirs(root / name, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(
                root / name / f'{i}.png')


def dataset_cfg(tmp_path):
    if not (tmp_path / 'images').exists():
        write_images(tmp_path / 'images')
        (tmp_path / 'desc.json').write_text(
            json.dumps({
                'cat': 'Cats purr when content. Cats chase mice at night.',
                'dog': 'Dogs bark at strangers. Dogs wag their tails. '
                'Dogs dig holes in gardens.'
            }))
    return dict(
        type='ClassTextDataset',
        dataset=dict(
            type='CustomDataset', data_root=str(tmp_path / 'images'),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='PackInputs')]),
        corpus=dict(json_file=str(tmp_path / 'desc.json'),
                    templates=TEMPLATES, cache_dir=str(tmp_path / 'cache')))


@pytest.fixture
def ds_cfg(tmp_path):
    return dataset_cfg(tmp_path)


def class_rows(corpus, label):
    a, b = corpus.class_offsets[label], corpus.class_offsets[label + 1]
    return corpus.get_tokens(range(a, b))


def test_wrapper_takes_class_names_and_exposes_labels(ds_cfg):
    ds = DATASETS.build(ds_cfg)
    assert isinstance(ds, ClassTextDataset)
    assert ds.corpus.class_names == ['cat', 'dog']
    assert ds.corpus.class_sentence_counts.tolist() == [4, 5]
    assert len(ds) == 10
    assert ds.get_gt_labels().tolist() == [0] * 7 + [1] * 3
    assert ds.class_counts.tolist() == [7, 3]
    assert ds.get_cat_ids(8) == [1]
    assert ds.metainfo['classes'] == ('cat', 'dog')
    item = ds[8]
    assert set(item) == {'inputs', 'data_samples', 'text_tokens',
                         'text_index'}
    assert item['inputs'].shape == (3, 8, 8)
    tokens = item['text_tokens']
    assert tokens.shape == (77, ) and tokens.dtype == torch.int64
    assert (class_rows(ds.corpus, 1) == tokens).all(1).any()
    # the index names the drawn sentence's corpus row, inside class 1
    row = item['text_index']
    assert ds.corpus.sentence_labels[row] == 1
    assert torch.equal(ds.corpus.get_tokens([row])[0], tokens)
    # get_gt_labels is what the long-tail samplers read
    sampler = DATA_SAMPLERS.build(
        dict(type='SquareRootSampler', dataset=ds, seed=0))
    assert all(0 <= i < len(ds) for i in sampler)


def test_built_objects_and_count_mismatch(ds_cfg, tmp_path):
    inner = DATASETS.build(ds_cfg['dataset'])
    with pytest.warns(UserWarning, match='prompts only'):
        corpus = ClassTextCorpus(class_names=['cat', 'dog'],
                                 templates=TEMPLATES)
    ds = ClassTextDataset(inner, corpus, seed=3)
    assert ds.corpus is corpus and ds.dataset is inner
    assert len(ds) == 10 and ds[0]['text_tokens'].shape == (77, )
    labels = tmp_path / 'labels.txt'
    labels.write_text('cat\ndog\nbird\n')
    with pytest.raises(ValueError, match=(
            r'the corpus \(.*labels\.txt\) has 3 classes but the dataset '
            r'\(CustomDataset\.metainfo\) has 2')), pytest.warns(
                UserWarning):
        ClassTextDataset(inner, dict(labels_file=str(labels),
                                     templates=TEMPLATES))
    with pytest.warns(UserWarning, match='prompts only'):
        three = ClassTextCorpus(class_names=['a', 'b', 'c'],
                                templates=TEMPLATES)
    with pytest.raises(ValueError, match='3 classes'):
        ClassTextDataset(inner, three)


def test_fresh_uniform_draws_per_access(ds_cfg):
    ds = DATASETS.build(dict(ds_cfg, seed=0))
    rows = class_rows(ds.corpus, 0)  # 4 sentences of 'cat'
    draws = 2000
    hits = np.zeros(len(rows), np.int64)
    for _ in range(draws):
        tokens = ds[0]['text_tokens']
        hits[(rows == tokens).all(1).numpy().argmax()] += 1
    assert hits.min() > 0
    expected = draws / len(rows)
    chi2 = ((hits - expected)**2 / expected).sum()
    assert chi2 < 16.3, hits  # 99.9% quantile, 3 degrees of freedom


def loader_cfg(ds_cfg, collate='default_collate'):
    return dict(batch_size=4, num_workers=2, persistent_workers=False,
                sampler=dict(type='DefaultSampler', shuffle=True),
                collate_fn=dict(type=collate), dataset=copy.deepcopy(ds_cfg))


def draws_per_epoch(ds_cfg, seed, epochs=2):
    """Two epochs through a real MMEngine dataloader with 2 workers."""
    set_random_seed(seed)
    loader = Runner.build_dataloader(loader_cfg(ds_cfg), seed=seed)
    corpus = loader.dataset.corpus
    out = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        seen = {}
        for batch in loader:
            assert batch['text_tokens'].shape[1:] == (77, )
            for sample, tokens in zip(batch['data_samples'],
                                      batch['text_tokens']):
                label = int(sample.gt_label)
                assert (class_rows(corpus, label) == tokens).all(1).any()
                seen[sample.sample_idx] = tokens
        assert sorted(seen) == list(range(10))
        out.append(torch.stack([seen[i] for i in range(10)]))
    return out


def test_workers_reproducible_under_mmengine_seed(ds_cfg):
    first = draws_per_epoch(ds_cfg, seed=0)
    again = draws_per_epoch(ds_cfg, seed=0)
    other = draws_per_epoch(ds_cfg, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], first[1])  # fresh every epoch
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


class TinyTextModel(BaseModel):
    """Embeds the class sentence; records what reached ``forward``."""

    def __init__(self):
        super().__init__(data_preprocessor=dict(
            type='ClassTextDataPreprocessor', mean=[127.5] * 3,
            std=[127.5] * 3))
        self.embed = torch.nn.Embedding(49408, 4)
        self.seen = []
        self.seen_indices = []

    def forward(self, inputs, data_samples=None, mode='tensor', texts=None,
                text_indices=None):
        self.seen.append((tuple(texts.shape), texts.dtype, texts.device))
        self.seen_indices.append(text_indices)
        loss = self.embed(texts).mean() + inputs.mean() * 0
        return dict(loss=loss)


@pytest.mark.parametrize('collate', ['default_collate', 'pseudo_collate'])
def test_tokens_reach_model_through_train_step(ds_cfg, collate):
    set_random_seed(0)
    loader = Runner.build_dataloader(loader_cfg(ds_cfg, collate), seed=0)
    model = TinyTextModel()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    before = model.embed.weight.detach().clone()
    for batch in loader:
        model.train_step(batch, optim)
    device = next(model.parameters()).device
    assert [s[0] for s in model.seen] == [(4, 77), (4, 77), (2, 77)]
    assert all(s[1] == torch.int64 and s[2] == device for s in model.seen)
    assert [tuple(i.shape) for i in model.seen_indices] == [(4, ), (4, ),
                                                            (2, )]
    assert not torch.equal(before, model.embed.weight)


def _dist_worker(rank, world_size, port, cfg, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port),
                      RANK=str(rank), WORLD_SIZE=str(world_size))
    torch.distributed.init_process_group('gloo', rank=rank,
                                         world_size=world_size)
    register_all_modules(init_default_scope=True)
    set_random_seed(0)
    lcfg = loader_cfg(cfg)
    lcfg['sampler'] = dict(type='SquareRootSampler', seed=0)
    loader = Runner.build_dataloader(lcfg, seed=0)
    corpus = loader.dataset.corpus
    rows = []
    for batch in loader:
        for sample, tokens in zip(batch['data_samples'],
                                  batch['text_tokens']):
            label = int(sample.gt_label)
            match = (class_rows(corpus, label) == tokens).all(1)
            assert match.any()
            rows.append([sample.sample_idx, label, int(match.int().argmax())])
    # same global seed on both ranks (MMEngine's default): the draws in
    # this process must still differ between ranks
    rows0 = class_rows(corpus, 0)
    direct = [
        int((rows0 == loader.dataset[0]['text_tokens']).all(1).int().argmax())
        for _ in range(30)
    ]
    with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
        json.dump(dict(fingerprint=corpus.fingerprint, rows=rows,
                       direct=direct), f)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_distributed_two_ranks_share_cache_and_draw_differently(tmp_path):
    cfg = dataset_cfg(tmp_path)
    cfg['dataset']['type'] = 'CustomDataset'
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    # fork: the children reuse the imported modules instead of paying the
    # import of mmpretrain/open_clip again on a 2-core machine.
    mp.start_processes(_dist_worker, args=(2, port, cfg, str(tmp_path)),
                       nprocs=2, start_method='fork')
    results = [
        json.load(open(tmp_path / f'rank{r}.json')) for r in range(2)
    ]
    assert results[0]['fingerprint'] == results[1]['fingerprint']
    assert all(len(r['rows']) == 5 for r in results)  # 10 items / 2 ranks
    # one cache file, written atomically by whichever rank finished first
    assert len([f for f in os.listdir(tmp_path / 'cache')
                if f.endswith('.npz')]) == 1
    assert results[0]['direct'] != results[1]['direct']
    assert all(len(set(r['direct'])) == 4 for r in results)


def test_pipeline_is_the_inner_datasets(ds_cfg):
    """Stock tools (``browse_dataset``) read and replace ``.pipeline``."""
    from mmengine.dataset import Compose
    ds = DATASETS.build(ds_cfg)
    assert ds.pipeline is ds.dataset.pipeline
    seen = []

    def record(results):
        seen.append(results['img_path'])
        return results

    ds.pipeline = Compose([*ds.dataset.pipeline.transforms[:1], record,
                           *ds.dataset.pipeline.transforms[1:]])
    assert ds.dataset.pipeline is ds.pipeline
    item = ds[8]
    assert seen == [ds.dataset.get_data_info(8)['img_path']]
    assert item['data_samples'].gt_label.tolist() == [1]
    assert 'text_tokens' in item
