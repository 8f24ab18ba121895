"""The per-class JSON file of LongTailAccuracy (``per_class_file``)."""
import json
import os
import os.path as osp

import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmpretrain.structures import DataSample

from vlltr_mm.evaluation.metrics import LongTailAccuracy
from vlltr_mm.evaluation.metrics.per_class_report import (
    resolve_per_class_file,
)

# many = {0, 1}, medium = {2}, few = {3, 4, 5}; class 5 is not evaluated.
COUNTS = [150, 100, 50, 20, 5, 3]
NAMES = ['cat', 'dog', 'owl', 'eel', 'yak', 'emu']
# (gt, fused top-1, image top-1, text top-1)
SAMPLES = [(0, 0, 0, 1), (0, 1, 0, 1), (1, 1, 2, 1), (2, 2, 2, 0),
           (3, 4, 4, 3), (4, 4, 0, 4)]


def make_samples():
    out = []
    for gt, *tops in SAMPLES:
        scores = []
        for top in tops:
            score = torch.full((6, ), 0.1)
            score[top] = 0.5
            scores.append(score)
        s = DataSample().set_gt_label(gt).set_pred_score(scores[0])
        s.set_field(scores[1], 'pred_score_image')
        s.set_field(scores[2], 'pred_score_text')
        out.append(s.to_dict())
    return out


def evaluate(metric, meta=None):
    metric.dataset_meta = meta
    metric.process(None, make_samples())
    return metric.evaluate(len(SAMPLES))


def test_file_by_hand(tmp_path):
    path = tmp_path / 'out' / 'per_class.json'
    metric = LongTailAccuracy(class_counts=COUNTS, per_class=True,
                              per_class_file=str(path))
    res = evaluate(metric, dict(classes=NAMES))
    data = json.loads(path.read_text())
    assert data['group_rule'] == 'consistent'
    assert data['metrics'] == pytest.approx(
        {k: v for k, v in res.items() if k != 'accuracy/per_class'})
    assert data['metrics']['accuracy/top1'] == pytest.approx(100 * 4 / 6)
    rows = data['classes']
    assert [r['name'] for r in rows] == NAMES
    assert [r['index'] for r in rows] == list(range(6))
    assert [r['train_count'] for r in rows] == COUNTS
    assert [r['group'] for r in rows] == ['many', 'many', 'medium', 'few',
                                         'few', 'few']
    assert [r['eval_count'] for r in rows] == [2, 1, 1, 1, 1, 0]
    # The list of the metric's results, with null (not NaN) for class 5.
    assert [r['accuracy'] for r in rows] == [50.0, 100.0, 100.0, 0.0,
                                             100.0, None]
    assert [r['accuracy_image'] for r in rows] == [100.0, 0.0, 100.0, 0.0,
                                                   0.0, None]
    assert [r['accuracy_text'] for r in rows] == [0.0, 100.0, 0.0, 100.0,
                                                  100.0, None]
    # Written atomically: no temporary file is left next to it.
    assert os.listdir(path.parent) == ['per_class.json']


def test_authors_rule_file(tmp_path):
    path = tmp_path / 'authors.json'
    metric = LongTailAccuracy(class_counts=COUNTS, group_rule='authors',
                              per_class_file=str(path))
    samples = make_samples()
    for s in samples:  # the raw logit sum is always right here
        s['pred_label_logit_sum'] = s['gt_label']
    metric.dataset_meta = dict(classes=NAMES)
    metric.process(None, samples)
    metric.evaluate(len(samples))
    data = json.loads(path.read_text())
    assert data['group_rule'] == 'authors'
    assert [r['accuracy'] for r in data['classes']][:5] == [100.0] * 5


def test_without_class_names_and_nan_group(tmp_path):
    path = tmp_path / 'per_class.json'
    # No class has 51 ... 99 images: the medium group is NaN.
    evaluate(LongTailAccuracy(class_counts=COUNTS, many_threshold=50,
                              few_threshold=20, per_class_file=str(path)))
    text = path.read_text()
    assert 'NaN' not in text  # strict JSON
    data = json.loads(text)
    assert data['metrics']['accuracy/medium'] is None
    assert [r['name'] for r in data['classes']] == [None] * 6
    assert data['classes'][0]['accuracy'] == 50.0


def test_errors(tmp_path):
    for bad in ('per_class.txt', 3, ''):
        with pytest.raises(ValueError, match="per_class_file must be None "
                           "or a path ending in '.json'"):
            LongTailAccuracy(class_counts=COUNTS, per_class_file=bad)
    path = tmp_path / 'per_class.json'
    metric = LongTailAccuracy(class_counts=COUNTS, per_class_file=str(path))
    with pytest.raises(ValueError, match=r"dataset_meta\['classes'\] has 5 "
                       'names but the class counts have 6 classes'):
        evaluate(metric, dict(classes=NAMES[:5]))
    assert not path.exists()


def test_relative_path_without_log_file(tmp_path):
    MMLogger.get_instance(f'no_log_file_{tmp_path.name}')
    assert resolve_per_class_file('a/b.json') == 'a/b.json'
    assert resolve_per_class_file(str(tmp_path / 'c.json')) == str(
        tmp_path / 'c.json')


class BranchModel(BaseModel):
    """Linear classifier over 4-d inputs with LGR-like branch scores."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 6)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        logits = self.fc(torch.stack(inputs))
        for sample, a, b in zip(data_samples, logits.softmax(1),
                                logits.flip(1).softmax(1)):
            sample.set_pred_score((a + b) / 2)
            sample.set_field(a, 'pred_score_image')
            sample.set_field(b, 'pred_score_text')
        return data_samples


class NamedItems(list):
    """A list dataset with the ``metainfo`` MMEngine's loops read."""
    metainfo = dict(classes=NAMES)


def test_relative_path_under_runner_log_dir(tmp_path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(30, 4, generator=gen)
    items = NamedItems(
        dict(inputs=x[i], data_samples=DataSample().set_gt_label(i % 5))
        for i in range(30))
    runner = Runner(
        model=BranchModel(),
        work_dir=str(tmp_path / 'work'),
        val_dataloader=dict(
            dataset=items,
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=7,
            collate_fn=dict(type='pseudo_collate')),
        val_cfg=dict(),
        val_evaluator=dict(type='LongTailAccuracy', class_counts=COUNTS,
                           per_class=True, per_class_file='val/pc.json'),
        # Runners of the same second would otherwise share one logger
        # (named by the timestamp), and so its log file.
        experiment_name=f'per_class_{tmp_path.name}',
        default_scope='mmpretrain')
    metrics = runner.val()
    path = osp.join(runner.log_dir, 'val', 'pc.json')
    assert runner.log_dir == str(tmp_path / 'work' / runner.timestamp)
    data = json.load(open(path))
    rows = data['classes']
    assert [r['name'] for r in rows] == NAMES
    assert [r['eval_count'] for r in rows] == [6] * 5 + [0]
    assert [r['accuracy'] for r in rows] == pytest.approx(
        metrics['accuracy/per_class'][:5] + [None])
    assert 'accuracy_text' in rows[0]
    assert data['metrics']['accuracy/top1_text'] == pytest.approx(
        metrics['accuracy/top1_text'])
    assert 'Per-class accuracy written to' in open(
        osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
