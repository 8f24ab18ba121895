"""Branch accuracies of LongTailAccuracy: samples carrying
``pred_score_image`` / ``pred_score_text`` (LGRHead) also get the top-1 and
the groups of each branch alone."""
import pytest
import torch
from mmpretrain.structures import DataSample

from vlltr_mm.evaluation.metrics import LongTailAccuracy
from vlltr_mm.evaluation.metrics.branch_predictions import extra_top1

# many = {0, 1}, medium = {2}, few = {3, 4}.
COUNTS = [150, 100, 50, 20, 5]
# (gt, fused top-1, image top-1, text top-1)
SAMPLES = [
    (0, 0, 0, 1), (0, 0, 0, 0),
    (1, 1, 1, 0), (1, 0, 1, 1), (1, 2, 0, 2), (1, 1, 1, 3),
    (2, 2, 4, 2), (2, 4, 4, 2),
    (3, 4, 4, 3),
    (4, 4, 0, 4),
]


def one_hot(index, num=5):
    score = torch.full((num, ), 0.1)
    score[index] = 0.6
    return score


def make_samples(samples=SAMPLES, branches=True):
    out = []
    for gt, fused, image, text in samples:
        s = DataSample().set_gt_label(gt).set_pred_score(one_hot(fused))
        if branches:
            s.set_field(one_hot(image), 'pred_score_image')
            s.set_field(one_hot(text), 'pred_score_text')
        out.append(s.to_dict())
    return out


def evaluate(metric, samples):
    metric.process(None, samples)
    return metric.evaluate(len(samples))


def test_branch_accuracies_by_hand():
    res = evaluate(LongTailAccuracy(class_counts=COUNTS), make_samples())
    # Hits per class: fused 2/2, 2/4, 1/2, 0/1, 1/1; image 2/2, 3/4, 0/2,
    # 0/1, 0/1; text 1/2, 1/4, 2/2, 1/1, 1/1.
    assert res == pytest.approx({
        'accuracy/top1': 60.0,
        'accuracy/many': (100 + 50) / 2, 'accuracy/medium': 50.0,
        'accuracy/few': (0 + 100) / 2,
        'accuracy/top1_image': 50.0,
        'accuracy/many_image': (100 + 75) / 2, 'accuracy/medium_image': 0.0,
        'accuracy/few_image': 0.0,
        'accuracy/top1_text': 60.0,
        'accuracy/many_text': (50 + 25) / 2, 'accuracy/medium_text': 100.0,
        'accuracy/few_text': 100.0,
    })
    # The fused keys are those of a sample without branches.
    plain = evaluate(LongTailAccuracy(class_counts=COUNTS),
                     make_samples(branches=False))
    assert plain == {k: v for k, v in res.items() if '_' not in k}


def test_branch_groups_follow_the_group_rule():
    samples = make_samples()
    for s, raw in zip(samples, [0, 0, 1, 1, 1, 1, 2, 2, 3, 4]):
        s['pred_label_logit_sum'] = torch.tensor([raw])
    res = evaluate(
        LongTailAccuracy(class_counts=COUNTS, group_rule='authors'),
        samples)
    # Sample-averaged: image many (2 + 3) / 6, text many (1 + 1) / 6.
    assert res['accuracy/many_image'] == pytest.approx(100 * 5 / 6)
    assert res['accuracy/many_text'] == pytest.approx(100 * 2 / 6)
    assert res['accuracy/few_text'] == pytest.approx(100.0)
    assert res['accuracy/many'] == pytest.approx(100.0)
    assert res['accuracy/top1'] == pytest.approx(60.0)


def test_only_indices_are_kept():
    metric = LongTailAccuracy(topk=(1, 2), class_counts=COUNTS)
    metric.process(None, make_samples())
    entry = metric.results[0]
    assert set(entry) == {'pred_topk', 'gt_label', 'pred_image',
                          'pred_text'}
    assert entry['pred_topk'].shape == (2, )
    assert isinstance(entry['pred_image'], int)
    assert [r['pred_text'] for r in metric.results] == [
        t for *_, t in SAMPLES]


def test_mixed_samples_error():
    metric = LongTailAccuracy(class_counts=COUNTS)
    metric.process(None, make_samples()[:4])
    metric.process(None, make_samples(branches=False)[4:])
    with pytest.raises(ValueError, match='4 of 10 samples carry '
                       'pred_score_image'):
        metric.evaluate(10)


def test_extra_top1_needs_both_branches():
    samples = make_samples()
    for s in samples:
        del s['pred_score_text']
    assert extra_top1(samples, logit_sum=False) == {}
