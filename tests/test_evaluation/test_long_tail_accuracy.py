"""Tests for the many / medium / few-shot accuracy metric."""
import json
import math
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmpretrain.evaluation import Accuracy
from mmpretrain.registry import METRICS
from mmpretrain.structures import DataSample

from vlltr_mm.evaluation.metrics import LongTailAccuracy

# Training counts: classes 1 and 3 sit exactly on the thresholds.
COUNTS = [150, 100, 50, 20, 5]
# (gt, top-1 prediction, top-2 prediction) of ten evaluation samples.
# Top-1 hits: 1, 2, 3, 7, 10; top-2 adds 4, 6 and 9.
SAMPLES = [
    (0, 0, 1), (0, 0, 2),                          # class 0: 2/2 top-1
    (1, 1, 0), (1, 0, 1), (1, 2, 3), (1, 3, 1),    # class 1: 1/4
    (2, 2, 4), (2, 4, 0),                          # class 2: 1/2
    (3, 4, 3),                                     # class 3: 0/1
    (4, 4, 3),                                     # class 4: 1/1
]
PER_CLASS = [100.0, 25.0, 50.0, 0.0, 100.0]


def make_samples(samples=SAMPLES, num_classes=5):
    """Data samples as the Evaluator hands them to ``process``."""
    out = []
    for gt, first, second in samples:
        score = torch.full((num_classes, ), 0.05)
        score[first], score[second] = 0.5, 0.3
        out.append(
            DataSample().set_gt_label(gt).set_pred_score(score).to_dict())
    return out


def evaluate(metric, samples):
    metric.process(None, samples)
    return metric.evaluate(len(samples))


def test_inclusive_split_by_hand():
    metric = LongTailAccuracy(
        topk=(1, 2), class_counts=COUNTS, per_class=True)
    res = evaluate(metric, make_samples())
    # many = {0, 1}, medium = {2}, few = {3, 4}; groups average classes.
    expected = {
        'accuracy/top1': 50.0,
        'accuracy/top2': 80.0,
        'accuracy/many': (100 + 25) / 2,
        'accuracy/medium': 50.0,
        'accuracy/few': (0 + 100) / 2,
        'accuracy/per_class': PER_CLASS,
    }
    assert res.keys() == expected.keys()
    for key, value in expected.items():
        assert res[key] == pytest.approx(value), key
    # The sample-weighted many-shot accuracy would be 3/6 = 50 %.
    assert res['accuracy/many'] != pytest.approx(50.0)


def test_exclusive_split_by_hand():
    metric = LongTailAccuracy(
        class_counts=COUNTS, many_inclusive=False, few_inclusive=False,
        prefix='lt')
    res = evaluate(metric, make_samples())
    # many = {0}, medium = {1, 2, 3} (100 and 20 are medium), few = {4}.
    assert res == pytest.approx({
        'lt/top1': 50.0,
        'lt/many': 100.0,
        'lt/medium': (25 + 50 + 0) / 3,
        'lt/few': 100.0,
    })


def test_custom_thresholds_and_registry():
    metric = METRICS.build(
        dict(
            type='LongTailAccuracy',
            class_counts=np.array(COUNTS),
            many_threshold=50,
            few_threshold=5,
            few_inclusive=False))
    res = evaluate(metric, make_samples())
    # many = {0, 1, 2}, medium = {3, 4}, few = {}.
    assert res['accuracy/many'] == pytest.approx((100 + 25 + 50) / 3)
    assert res['accuracy/medium'] == pytest.approx(50.0)
    assert math.isnan(res['accuracy/few'])


def test_absent_classes_are_skipped():
    # Class 5 (few-shot) has training images but no evaluation sample.
    metric = LongTailAccuracy(class_counts=COUNTS + [3], per_class=True)
    res = evaluate(metric, make_samples(num_classes=6))
    assert res['accuracy/few'] == pytest.approx(50.0)
    assert res['accuracy/per_class'][:5] == pytest.approx(PER_CLASS)
    assert math.isnan(res['accuracy/per_class'][5])


def test_pred_label_only():
    samples = [
        DataSample().set_gt_label(gt).set_pred_label(first).to_dict()
        for gt, first, _ in SAMPLES
    ]
    metric = LongTailAccuracy(class_counts=COUNTS)
    res = evaluate(metric, samples)
    assert res['accuracy/top1'] == pytest.approx(50.0)
    assert res['accuracy/many'] == pytest.approx(62.5)
    with pytest.raises(ValueError, match='needs pred_score'):
        LongTailAccuracy(class_counts=COUNTS, topk=2).process(None, samples)


def test_matches_mmpretrain_accuracy_and_reference():
    gen = torch.Generator().manual_seed(0)
    num_classes, n = 12, 300
    counts = torch.randint(1, 200, (num_classes, ), generator=gen).numpy()
    gt = torch.randint(0, num_classes, (n, ), generator=gen)
    scores = torch.rand(n, num_classes, generator=gen)
    scores[torch.arange(n), gt] += 0.4  # make it better than chance
    samples = [
        DataSample().set_gt_label(int(g)).set_pred_score(s).to_dict()
        for g, s in zip(gt, scores)
    ]
    ours = Evaluator(LongTailAccuracy(topk=(1, 5), class_counts=counts))
    theirs = Evaluator(Accuracy(topk=(1, 5)))
    ours.process(samples)
    theirs.process(samples)
    res, ref = ours.evaluate(n), theirs.evaluate(n)
    assert res['accuracy/top1'] == pytest.approx(ref['accuracy/top1'])
    assert res['accuracy/top5'] == pytest.approx(ref['accuracy/top5'])

    # Direct per-class loop as the reference for the groups.
    hit = (scores.argmax(1) == gt).numpy()
    gt = gt.numpy()
    groups = dict(
        many=counts >= 100, medium=(counts > 20) & (counts < 100),
        few=counts <= 20)
    for name, mask in groups.items():
        accs = [
            hit[gt == c].mean() * 100 for c in range(num_classes)
            if mask[c] and (gt == c).any()
        ]
        assert res[f'accuracy/{name}'] == pytest.approx(np.mean(accs))


def test_errors():
    # Neither class_counts nor train_ann_file is fine now (ClassPriorHook
    # sets the counts later); both is not.
    assert LongTailAccuracy().class_counts is None
    with pytest.raises(ValueError, match='at most one of class_counts'):
        LongTailAccuracy(class_counts=COUNTS, train_ann_file='train.txt')
    with pytest.raises(ValueError, match='non-negative integer'):
        LongTailAccuracy(class_counts=[10, -1])
    with pytest.raises(ValueError, match='non-negative integer'):
        LongTailAccuracy(class_counts=[[10, 1]])
    with pytest.raises(ValueError, match='non-negative integer'):
        LongTailAccuracy(class_counts=[2.5, 1])
    with pytest.raises(ValueError, match='overlap'):
        LongTailAccuracy(
            class_counts=COUNTS, many_threshold=20, few_threshold=100)
    with pytest.raises(ValueError, match='overlap'):
        LongTailAccuracy(
            class_counts=COUNTS, many_threshold=50, few_threshold=50)
    with pytest.raises(ValueError, match='positive integers'):
        LongTailAccuracy(class_counts=COUNTS, topk=(1, 0))

    metric = LongTailAccuracy(class_counts=COUNTS[:4])
    with pytest.raises(ValueError, match='have 5 classes but class_counts'):
        metric.process(None, make_samples())
    with pytest.raises(ValueError, match='top-6 accuracy needs at least'):
        LongTailAccuracy(class_counts=COUNTS, topk=(1, 6))
    metric = LongTailAccuracy(class_counts=COUNTS)
    bad = make_samples([(5, 0, 1)])
    with pytest.raises(ValueError, match='gt_label or prediction out of'):
        evaluate(metric, bad)


def test_set_class_counts_later():
    metric = LongTailAccuracy(topk=(1, 2), per_class=True)
    assert not metric.explicit
    with pytest.raises(RuntimeError, match='ClassPriorHook'):
        metric.process(None, make_samples())
    assert metric.results == []
    for bad, match in (([10, -1], 'non-negative integer'),
                       ([[10, 1]], 'non-negative integer'),
                       ([0, 0, 0], 'all zero')):
        with pytest.raises(ValueError, match=match):
            metric.set_class_counts(bad)
        assert metric.class_counts is None
    metric.set_class_counts(np.array(COUNTS))
    assert metric.class_counts.dtype == np.int64
    assert metric.class_counts.tolist() == COUNTS
    assert metric.num_classes == 5 and not metric.explicit
    assert metric.group_masks['many'].tolist() == [1, 1, 0, 0, 0]
    assert metric.group_masks['medium'].tolist() == [0, 0, 1, 0, 0]
    assert metric.group_masks['few'].tolist() == [0, 0, 0, 1, 1]
    # The same results as counts given at construction.
    ref = evaluate(
        LongTailAccuracy(topk=(1, 2), class_counts=COUNTS, per_class=True),
        make_samples())
    assert evaluate(metric, make_samples()) == ref
    # Exclusive thresholds given at construction apply to later counts.
    metric = LongTailAccuracy(many_inclusive=False, few_inclusive=False)
    metric.set_class_counts(COUNTS)
    assert metric.group_masks['medium'].tolist() == [0, 1, 1, 1, 0]
    assert LongTailAccuracy(class_counts=COUNTS).explicit


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_distributed_matches_single_process(tmp_path):
    """2 gloo ranks each evaluate part of the samples (even, padded and
    uneven shards, both collect devices); all equal one process."""
    script = osp.join(osp.dirname(__file__), '_dist_metric_script.py')
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

    def single(n):
        metric = LongTailAccuracy(
            topk=(1, 2), class_counts=COUNTS, per_class=True)
        return evaluate(metric, make_samples(SAMPLES[:n]))

    expected = dict(strided=single(10), padded=single(9), uneven=single(9),
                    shuffled=single(9), halves=single(9))
    # Without its last sample class 4 is absent, so NaN must survive too.
    assert math.isnan(expected['padded']['accuracy/per_class'][4])
    outputs = []
    for rank in range(2):
        with open(out / f'rank{rank}.json') as f:
            outputs.append(json.load(f))
    # The shards really are uneven / padded as the case names say.
    idx = [o['indices'] for o in outputs]
    assert idx[0]['padded'] == [0, 2, 4, 6, 8]
    assert idx[1]['padded'] == [1, 3, 5, 7, 0]
    assert [len(i['uneven']) for i in idx] == [5, 4]
    assert [len(i['halves']) for i in idx] == [5, 4]
    shuffled = idx[0]['shuffled'] + idx[1]['shuffled']
    assert len(shuffled) == 10 and set(shuffled) == set(range(9))
    for rank, output in enumerate(outputs):
        results = output['results']
        assert len(results) == 2 * len(expected)
        for case, ref in expected.items():
            for device in ('cpu', 'gpu'):
                res = results[f'{case}_{device}']
                assert res.keys() == ref.keys()
                for key, value in ref.items():
                    assert res[key] == pytest.approx(value, nan_ok=True), (
                        rank, case, device, key)


class ToyClassifier(BaseModel):
    """Linear classifier over 4-d inputs, returning MMPretrain samples."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        logits = self.fc(torch.stack(inputs))
        if mode == 'loss':
            gt = torch.cat([s.gt_label for s in data_samples])
            return dict(loss=torch.nn.functional.cross_entropy(logits, gt))
        for sample, score in zip(data_samples, logits.softmax(1)):
            sample.set_pred_score(score)
        return data_samples


def toy_items(n=24):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=gen)
    return [
        dict(inputs=x[i], data_samples=DataSample().set_gt_label(i % 5))
        for i in range(n)
    ]


def test_per_class_list_in_real_runner(tmp_path):
    """A list-valued result must not break MMEngine's logging or the
    checkpoints the message hub ends up in."""
    loader = dict(
        dataset=toy_items(),
        sampler=dict(type='DefaultSampler', shuffle=False),
        batch_size=5,
        collate_fn=dict(type='pseudo_collate'))
    runner = Runner(
        model=ToyClassifier(),
        work_dir=str(tmp_path),
        train_dataloader=dict(
            loader, sampler=dict(type='DefaultSampler', shuffle=True)),
        train_cfg=dict(by_epoch=True, max_epochs=1, val_interval=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        val_dataloader=loader,
        val_cfg=dict(),
        val_evaluator=dict(
            type='LongTailAccuracy',
            topk=(1, 2),
            class_counts=COUNTS,
            per_class=True),
        default_scope='mmpretrain')
    runner.train()
    metrics = runner.val()
    assert len(metrics['accuracy/per_class']) == 5
    assert isinstance(metrics['accuracy/top1'], float)
    log = (tmp_path / runner.timestamp / f'{runner.timestamp}.log')
    text = log.read_text()
    assert 'accuracy/per_class' in text and 'accuracy/few' in text
    # Scalars reach the visualizer backends; the list stays in the log.
    scalars = (tmp_path / runner.timestamp / 'vis_data' /
               'scalars.json').read_text().splitlines()
    val_lines = [json.loads(line) for line in scalars if 'accuracy/top1'
                 in line]
    assert val_lines and 'accuracy/per_class' not in val_lines[-1]
    # A checkpoint whose message hub holds the list loads safely.
    runner.save_checkpoint(str(tmp_path), 'after_val.pth')
    ckpt = torch.load(tmp_path / 'after_val.pth', weights_only=True)
    info = ckpt['message_hub']['runtime_info']
    assert info['val/accuracy/per_class'] == pytest.approx(
        metrics['accuracy/per_class'], nan_ok=True)


def test_counts_from_train_ann_file(tmp_path):
    # 150 / 100 / 50 / 20 / 5 training images, as in COUNTS.
    lines = [
        f'train/{c}/{i}.jpg {c}' for c, n in enumerate(COUNTS)
        for i in range(n)
    ]
    ann = tmp_path / 'ImageNet_LT_train.txt'
    ann.write_text('\n'.join(lines) + '\n')
    metric = LongTailAccuracy(
        topk=(1, 2), train_ann_file=str(ann), per_class=True)
    np.testing.assert_array_equal(metric.class_counts, COUNTS)
    res = evaluate(metric, make_samples())
    assert res['accuracy/many'] == pytest.approx(62.5)
    assert res['accuracy/few'] == pytest.approx(50.0)
    # A trailing class without training images needs num_classes.
    metric = LongTailAccuracy(train_ann_file=str(ann), num_classes=6)
    np.testing.assert_array_equal(metric.class_counts, COUNTS + [0])
    assert metric.group_masks['few'].tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match='have 6 classes but class_counts'):
        LongTailAccuracy(train_ann_file=str(ann)).process(
            None, make_samples(num_classes=6))
