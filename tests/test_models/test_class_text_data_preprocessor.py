import pytest
import torch
from mmengine.dataset import default_collate, pseudo_collate
from mmpretrain.models.utils.data_preprocessor import ClsDataPreprocessor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import vlltr_mm  # noqa: F401  (registers everything)
from vlltr_mm.models.data_preprocessors import ClassTextDataPreprocessor

CFG = dict(mean=[10., 20., 30.], std=[2., 4., 8.], to_rgb=True)


def make_items(n=3, with_text=True, dtype=torch.int64):
    gen = torch.Generator().manual_seed(0)
    items = []
    for i in range(n):
        item = dict(
            inputs=torch.randint(0, 255, (3, 4, 4), generator=gen,
                                 dtype=torch.uint8),
            data_samples=DataSample().set_gt_label(i % 2))
        if with_text:
            item['text_tokens'] = torch.arange(i, i + 77).to(dtype)
        items.append(item)
    return items


def expected_texts(n=3):
    return torch.stack([torch.arange(i, i + 77) for i in range(n)])


@pytest.mark.parametrize('collate', [default_collate, pseudo_collate])
def test_texts_delivered_and_images_as_parent(collate):
    pre = MODELS.build(dict(type='ClassTextDataPreprocessor', **CFG))
    assert isinstance(pre, ClassTextDataPreprocessor)
    assert isinstance(pre, ClsDataPreprocessor)
    out = pre(collate(make_items()), training=True)
    ref = ClsDataPreprocessor(**CFG)(collate(make_items()), training=True)
    assert set(out) == {'inputs', 'data_samples', 'texts'}
    assert torch.equal(out['inputs'], ref['inputs'])
    assert [int(s.gt_label) for s in out['data_samples']] == [0, 1, 0]
    assert out['texts'].dtype == torch.int64
    assert torch.equal(out['texts'], expected_texts())
    assert out['texts'].device == pre.device


def test_no_tokens_no_texts_key():
    pre = ClassTextDataPreprocessor(**CFG)
    out = pre(default_collate(make_items(with_text=False)), training=False)
    assert set(out) == {'inputs', 'data_samples'}


def test_int32_tokens_are_cast():
    pre = ClassTextDataPreprocessor(**CFG)
    out = pre(default_collate(make_items(dtype=torch.int32)))
    assert out['texts'].dtype == torch.int64
    assert torch.equal(out['texts'], expected_texts())


def test_texts_untouched_by_batch_augments():
    pre = ClassTextDataPreprocessor(
        num_classes=2,
        batch_augments=dict(augments=dict(type='Mixup', alpha=1.0)), **CFG)
    out = pre(default_collate(make_items(4)), training=True)
    assert out['data_samples'][0].gt_score.shape == (2, )  # mixup ran
    assert torch.equal(out['texts'], expected_texts(4))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_texts_follow_model_device():
    pre = ClassTextDataPreprocessor(**CFG).cuda()
    out = pre(default_collate(make_items()))
    assert out['texts'].is_cuda and out['inputs'].is_cuda
