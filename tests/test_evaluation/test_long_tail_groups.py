"""The two group rules of LongTailAccuracy: 'consistent' (fused top-1,
class-averaged) and 'authors' (raw logit-sum argmax, sample-averaged)."""
import math

import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmpretrain.structures import DataSample

from vlltr_mm.evaluation.metrics import LongTailAccuracy
from vlltr_mm.evaluation.metrics.long_tail_groups import (
    score_groups,
    split_classes,
)
from vlltr_mm.models.heads import LGRHead

# Training counts: many = {0, 1}, medium = {2}, few = {3, 4}.
COUNTS = [150, 100, 50, 20, 5]
# (gt, fused top-1, fused top-2, argmax of the raw logit sum).
SAMPLES = [
    (0, 0, 1, 0), (0, 0, 2, 1),
    (1, 1, 0, 1), (1, 0, 1, 1), (1, 2, 3, 1), (1, 3, 1, 1),
    (2, 2, 4, 2), (2, 4, 0, 2),
    (3, 4, 3, 3),
    (4, 4, 3, 0),
]


def make_samples(samples=SAMPLES, logit_sum=True):
    out = []
    for gt, first, second, raw in samples:
        score = torch.full((5, ), 0.05)
        score[first], score[second] = 0.5, 0.3
        sample = DataSample().set_gt_label(gt).set_pred_score(score)
        if logit_sum:
            sample.set_field(torch.tensor([raw]), 'pred_label_logit_sum')
        out.append(sample.to_dict())
    return out


def evaluate(metric, samples):
    metric.process(None, samples)
    return metric.evaluate(len(samples))


def test_rules_differ_by_hand():
    consistent = evaluate(
        LongTailAccuracy(topk=(1, 2), class_counts=COUNTS, per_class=True),
        make_samples())
    authors = evaluate(
        LongTailAccuracy(topk=(1, 2), class_counts=COUNTS, per_class=True,
                         group_rule='authors'), make_samples())
    # Fused top-1 hits per class: 2/2, 1/4, 1/2, 0/1, 1/1; groups average
    # the classes.
    assert consistent.pop('accuracy/per_class') == pytest.approx(
        [100.0, 25.0, 50.0, 0.0, 100.0])
    assert consistent == pytest.approx({
        'accuracy/top1': 50.0, 'accuracy/top2': 80.0,
        'accuracy/many': (100 + 25) / 2, 'accuracy/medium': 50.0,
        'accuracy/few': (0 + 100) / 2})
    # Logit-sum hits per class: 1/2, 4/4, 2/2, 1/1, 0/1; groups count
    # samples: many (1 + 4) / (2 + 4), few (1 + 0) / (1 + 1). The top-k
    # stay the fused score's.
    assert authors.pop('accuracy/per_class') == pytest.approx(
        [50.0, 100.0, 100.0, 100.0, 0.0])
    assert authors == pytest.approx({
        'accuracy/top1': 50.0, 'accuracy/top2': 80.0,
        'accuracy/many': 100 * 5 / 6, 'accuracy/medium': 100.0,
        'accuracy/few': 50.0})
    # Class-averaged, the logit-sum many-shot accuracy would be 75 %.
    assert authors['accuracy/many'] != pytest.approx(75.0)


def test_score_groups_against_direct_loops():
    gen = torch.Generator().manual_seed(0)
    # Every group, the thresholds, and untrained classes (0 and 10).
    counts = np.array([0, 3, 20, 21, 50, 99, 100, 150, 5, 7, 0, 180])
    gt = torch.randint(0, 12, (300, ), generator=gen)
    gt[gt == 7] = 8  # class 7 has no evaluation sample
    hit = torch.rand(300, generator=gen) < 0.6
    support = torch.bincount(gt, minlength=12).double()
    for rule in ('consistent', 'authors'):
        masks = split_classes(counts, 100, 20, True, True, rule)
        class_acc, groups = score_groups(hit, gt, support, masks, rule)
        ref = [hit[gt == c].double().mean().item() * 100
               if (gt == c).any() else math.nan for c in range(12)]
        np.testing.assert_allclose(class_acc.numpy(), ref)
        for name, mask in masks.items():
            classes = mask.nonzero().flatten().tolist()
            if rule == 'authors':
                chosen = torch.isin(gt, torch.tensor(classes))
                expected = hit[chosen].double().mean().item() * 100
            else:
                expected = np.nanmean([ref[c] for c in classes])
            assert groups[name] == pytest.approx(expected), (rule, name)


def test_authors_rule_leaves_untrained_classes_out():
    counts = np.array([150, 50, 20, 0])
    consistent = split_classes(counts, 100, 20, True, True, 'consistent')
    authors = split_classes(counts, 100, 20, True, True, 'authors')
    assert consistent['few'].tolist() == [0, 0, 1, 1]
    # The authors' lowest group is 0 < n <= 20.
    assert authors['few'].tolist() == [0, 0, 1, 0]
    assert authors['medium'].tolist() == consistent['medium'].tolist()
    assert authors['many'].tolist() == consistent['many'].tolist()
    # Through the metric: class 3's sample counts in no authors group.
    samples = make_samples([(2, 2, 0, 2), (3, 3, 0, 0)], logit_sum=True)
    metric = LongTailAccuracy(class_counts=[150, 50, 20, 0, 0],
                              group_rule='authors')
    res = evaluate(metric, samples)
    assert res['accuracy/few'] == pytest.approx(100.0)
    assert math.isnan(res['accuracy/many'])


def test_authors_rule_errors():
    with pytest.raises(ValueError, match="group_rule must be one of "
                       r"\('consistent', 'authors'\), got 'paper'"):
        LongTailAccuracy(class_counts=COUNTS, group_rule='paper')
    metric = LongTailAccuracy(class_counts=COUNTS, group_rule='authors')
    # A linear head's predictions: no raw logit-sum label.
    with pytest.raises(ValueError, match=r"group_rule='authors'\) needs "
                       '`pred_label_logit_sum`.*lack it'):
        metric.process(None, make_samples(logit_sum=False))
    assert metric.results == []
    # The default rule does not need the field.
    res = evaluate(LongTailAccuracy(class_counts=COUNTS),
                   make_samples(logit_sum=False))
    assert res['accuracy/many'] == pytest.approx(62.5)


def test_lgr_head_predictions_to_metric():
    """Real LGRHead.predict output through MMEngine's Evaluator: top-k
    from the fused score, groups from the raw logit sum, sample-averaged;
    each branch from its own scores."""
    torch.manual_seed(0)
    num_classes, dim, n = 6, 8, 60
    head = LGRHead(num_classes, dim, num_anchors=3, alpha=0.7,
                   posthoc_tau=1.0, class_counts=[300, 120, 60, 30, 10, 4])
    head.set_anchors(torch.randn(num_classes, 3, dim), logit_scale=100.0)
    counts = [300, 120, 60, 30, 10, 4]  # many {0, 1}, medium {2, 3}
    gt = torch.arange(n) % num_classes
    x = torch.randn(n, dim)
    with torch.no_grad():
        li, lt = head.branch_logits((x, ))
        fused = head((x, ))
    out = head.predict(
        (x, ), [DataSample().set_gt_label(int(g)) for g in gt])
    results = {}
    for rule in ('consistent', 'authors'):
        evaluator = Evaluator(LongTailAccuracy(
            topk=(1, 2), class_counts=counts, group_rule=rule))
        evaluator.process(out)
        results[rule] = evaluator.evaluate(n)
    authors = results['authors']
    top2 = (fused.topk(2).indices == gt[:, None]).any(1)
    assert authors['accuracy/top2'] == pytest.approx(
        top2.double().mean().item() * 100)
    for rule, res in results.items():
        assert res['accuracy/top1'] == pytest.approx(
            (fused.argmax(1) == gt).double().mean().item() * 100)
    groups = dict(many=gt <= 1, medium=(gt == 2) | (gt == 3), few=gt >= 4)
    raw_hit = (li + lt).argmax(1) == gt
    for name, chosen in groups.items():
        assert authors[f'accuracy/{name}'] == pytest.approx(
            raw_hit[chosen].double().mean().item() * 100), name
    # The post-hoc adjustment moves the fused labels, not the raw sum.
    fused_hit = fused.argmax(1) == gt
    assert not torch.equal(fused_hit, raw_hit)
    for branch, logits in (('image', li - torch.log(
            torch.tensor(counts) / sum(counts))), ('text', lt)):
        hit = logits.argmax(1) == gt
        for res in results.values():
            assert res[f'accuracy/top1_{branch}'] == pytest.approx(
                hit.double().mean().item() * 100), branch
        for name, chosen in groups.items():
            assert authors[f'accuracy/{name}_{branch}'] == pytest.approx(
                hit[chosen].double().mean().item() * 100), (branch, name)
