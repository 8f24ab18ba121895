import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlltr_mm.engine.hooks.anss_scoring import (
    lin_loss_scores,
    select_anchors,
    select_pool,
)


def _reference_scores(text, images, sent_labels, img_labels, scale):
    """Eq. 2 (text side) literally, one sentence at a time."""
    text = [t / t.norm() for t in text.double()]
    images = [i / i.norm() for i in images.double()]
    out = []
    for t, c in zip(text, sent_labels.tolist()):
        logits = [scale * float(t @ i) for i in images]
        log_z = math.log(sum(math.exp(v) for v in logits))
        positives = [
            v - log_z for v, y in zip(logits, img_labels.tolist()) if y == c
        ]
        out.append(-sum(positives) / len(positives)
                   if positives else math.inf)
    return torch.tensor(out, dtype=torch.float64)


def test_matches_per_sentence_reference():
    g = torch.Generator().manual_seed(0)
    text = torch.randn(23, 8, generator=g) * 3
    images = torch.randn(11, 8, generator=g)
    sent_labels = torch.randint(0, 4, (23, ), generator=g)
    img_labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 1, 2, 0])
    # class 3 has no pool image -> +inf by definition
    scores = lin_loss_scores(text, images, sent_labels, img_labels, 14.3)
    ref = _reference_scores(text, images, sent_labels, img_labels, 14.3)
    assert scores.dtype == torch.float32 and scores.shape == (23, )
    finite = torch.isfinite(ref)
    assert (~finite).sum() == (sent_labels == 3).sum() > 0
    assert torch.equal(torch.isinf(scores), ~finite)
    torch.testing.assert_close(scores[finite].double(), ref[finite],
                               rtol=1e-5, atol=1e-5)
    # numpy labels and float64 inputs take the same path
    scores64 = lin_loss_scores(text.double(), images.double(),
                               sent_labels.numpy(), img_labels.numpy(), 14.3)
    torch.testing.assert_close(scores64[finite].double(), ref[finite],
                               rtol=1e-6, atol=1e-6)


def test_large_scale_is_stable():
    # s = 100 with near-orthogonal embeddings would overflow a naive exp
    g = torch.Generator().manual_seed(1)
    text = torch.randn(5, 16, generator=g)
    images = torch.randn(7, 16, generator=g)
    sl, il = torch.zeros(5, dtype=torch.long), torch.arange(7) % 2
    scores = lin_loss_scores(text, images, sl, il, 1000.0)
    ref = _reference_scores(text, images, sl, il, 1000.0)
    assert torch.isfinite(scores).all()
    torch.testing.assert_close(scores.double(), ref, rtol=1e-5, atol=1e-3)


def test_chunk_size_invariance():
    g = torch.Generator().manual_seed(2)
    text = torch.randn(101, 32, generator=g)
    images = torch.randn(40, 32, generator=g)
    sl = torch.randint(0, 5, (101, ), generator=g)
    il = torch.arange(40) % 5
    full = lin_loss_scores(text, images, sl, il, 50.0, chunk_size=4096)
    for chunk in (1, 7, 100, 101):
        torch.testing.assert_close(
            lin_loss_scores(text, images, sl, il, 50.0, chunk_size=chunk),
            full, rtol=1e-6, atol=1e-5)


def test_scale_of_inputs_does_not_matter():
    g = torch.Generator().manual_seed(3)
    text = torch.randn(9, 6, generator=g)
    images = torch.randn(5, 6, generator=g)
    sl, il = torch.arange(9) % 3, torch.arange(5) % 3
    a = lin_loss_scores(text, images, sl, il, 20.0)
    b = lin_loss_scores(text * 7.5, images * 0.01, sl, il, 20.0)
    torch.testing.assert_close(a, b)


def _clustered_case(num_classes=4, per_class=10, dim=32, num_bad=3):
    """Images cluster around class centres; the last ``num_bad`` sentences
    of each class point at another class's centre (the noisy ones)."""
    g = torch.Generator().manual_seed(4)
    centres = F.normalize(torch.randn(num_classes, dim, generator=g), dim=1)
    img_labels = torch.arange(num_classes).repeat_interleave(6)
    images = centres[img_labels] + 0.1 * torch.randn(
        len(img_labels), dim, generator=g)
    sent_labels = torch.arange(num_classes).repeat_interleave(per_class)
    pointed = sent_labels.clone()
    is_bad = (torch.arange(len(sent_labels)) % per_class) >= (per_class -
                                                              num_bad)
    pointed[is_bad] = (sent_labels[is_bad] + 1) % num_classes
    text = centres[pointed] + 0.1 * torch.randn(
        len(sent_labels), dim, generator=g)
    offsets = torch.arange(num_classes + 1) * per_class
    return text, images, sent_labels, img_labels, offsets, is_bad


def test_bad_sentences_are_not_selected():
    text, images, sl, il, offsets, is_bad = _clustered_case()
    scores = lin_loss_scores(text, images, sl, il, 30.0)
    per_class = scores.view(4, 10)
    bad = is_bad.view(4, 10)
    # within every class, each noisy sentence scores worse than every good one
    assert (per_class[bad].view(4, 3).amin(1) >
            per_class[~bad].view(4, 7).amax(1)).all()
    indices, mask = select_anchors(scores, offsets, 7, mode='anss')
    assert mask.all()
    chosen = indices.flatten()
    assert not is_bad[chosen].any()
    # each class's anchors are its own sentences, best first
    assert torch.equal(sl[indices], torch.arange(4).unsqueeze(1).expand(4, 7))
    assert (scores[indices].diff(dim=1) >= 0).all()
    # the cut-off rule instead keeps the first 7, bad ones included
    cut, cut_mask = select_anchors(scores, offsets, 8, mode='cutoff')
    assert is_bad[cut.flatten()].any()


def test_cutoff_takes_first_m_and_ignores_scores():
    offsets = np.array([0, 5, 9, 15], dtype=np.int64)
    indices, mask = select_anchors(None, offsets, 3, mode='cutoff')
    assert torch.equal(indices,
                       torch.tensor([[0, 1, 2], [5, 6, 7], [9, 10, 11]]))
    assert mask.all() and mask.dtype == torch.bool
    assert indices.dtype == torch.long


def test_anss_selection_by_hand():
    offsets = torch.tensor([0, 4, 7])
    scores = torch.tensor([3.0, 1.0, 2.0, 1.0, 0.5, 9.0, -1.0])
    indices, mask = select_anchors(scores, offsets, 3)
    # ties keep corpus order (1 before 3)
    assert torch.equal(indices, torch.tensor([[1, 3, 2], [6, 4, 5]]))
    assert mask.all()


def test_short_classes_are_padded_and_masked():
    offsets = torch.tensor([0, 2, 7, 8])
    scores = torch.tensor([5.0, 4.0, 0., 1., 2., 3., 4., 7.])
    indices, mask = select_anchors(scores, offsets, 4)
    assert torch.equal(
        mask,
        torch.tensor([[True, True, False, False], [True, True, True, True],
                      [True, False, False, False]]))
    # padding repeats the best real sentence of the class
    assert torch.equal(indices,
                       torch.tensor([[1, 0, 1, 1], [2, 3, 4, 5], [7, 7, 7,
                                                                   7]]))
    cut, cut_mask = select_anchors(scores, offsets, 4, mode='cutoff')
    assert torch.equal(cut_mask, mask)
    assert torch.equal(cut[0], torch.tensor([0, 1, 0, 0]))


def test_class_without_pool_images_falls_back_to_corpus_order():
    g = torch.Generator().manual_seed(5)
    text = torch.randn(8, 4, generator=g)
    images = torch.randn(3, 4, generator=g)
    sl = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    scores = lin_loss_scores(text, images, sl, torch.zeros(3).long(), 10.0)
    assert torch.isinf(scores[4:]).all() and torch.isfinite(scores[:4]).all()
    indices, mask = select_anchors(scores, torch.tensor([0, 4, 8]), 2)
    assert torch.equal(indices[1], torch.tensor([4, 5]))
    assert mask.all()


def test_errors():
    t, i = torch.randn(3, 4), torch.randn(2, 4)
    sl, il = torch.zeros(3).long(), torch.zeros(2).long()
    with pytest.raises(ValueError, match='embedding sizes differ'):
        lin_loss_scores(t, torch.randn(2, 5), sl, il, 1.0)
    with pytest.raises(ValueError, match=r'sentence_labels must have shape'):
        lin_loss_scores(t, i, sl[:2], il, 1.0)
    with pytest.raises(ValueError, match='image pool is empty'):
        lin_loss_scores(t, i[:0], sl, il[:0], 1.0)
    with pytest.raises(ValueError, match='chunk_size'):
        lin_loss_scores(t, i, sl, il, 1.0, chunk_size=0)
    with pytest.raises(ValueError, match='mode must be one of'):
        select_anchors(None, [0, 3], 2, mode='knn')
    with pytest.raises(ValueError, match='needs scores'):
        select_anchors(None, [0, 3], 2)
    with pytest.raises(ValueError, match=r'classes \[1\] have no sentence'):
        select_anchors(torch.zeros(3), [0, 3, 3], 2)
    with pytest.raises(ValueError, match=r'scores must have shape \[3\]'):
        select_anchors(torch.zeros(4), [0, 3], 2)
    with pytest.raises(ValueError, match='NaN'):
        select_anchors(torch.tensor([0., float('nan'), 1.]), [0, 3], 2)
    with pytest.raises(ValueError, match='num_anchors'):
        select_anchors(torch.zeros(3), [0, 3], 0)


def test_select_pool_first_k():
    labels = np.array([2, 0, 0, 1, 0, 2, 0, 1, 2, 2])
    assert select_pool(labels, 2).tolist() == [0, 1, 2, 3, 5, 7]
    assert select_pool(labels, None).tolist() == list(range(10))
    assert select_pool(labels, 100).tolist() == list(range(10))


def test_select_pool_random_is_seeded_and_capped():
    labels = np.repeat(np.arange(5), [30, 1, 7, 12, 50])
    a = select_pool(labels, 10, mode='random', seed=3)
    assert np.array_equal(a, select_pool(labels, 10, mode='random', seed=3))
    assert not np.array_equal(a, select_pool(labels, 10, 'random', seed=4))
    assert np.array_equal(np.bincount(labels[a]), [10, 1, 7, 10, 10])
    assert np.all(np.diff(a) > 0)  # ascending, no repeats
    with pytest.raises(ValueError, match='pool mode'):
        select_pool(labels, 10, mode='last')
    with pytest.raises(ValueError, match='max_per_class'):
        select_pool(labels, 0)
