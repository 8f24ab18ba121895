"""One image through MMPretrain's inference APIs with an LGR-stage model.

The config inherits the real ``configs/vlltr/lgr_r50_imagenet-lt.py`` and
swaps in the tiny random open_clip ResNet; the checkpoint holds anchors
set on the head, as the AnSS hook leaves them, and the class names in its
``dataset_meta``, as MMEngine's CheckpointHook writes them.
"""
import os.path as osp

import numpy as np
import pytest
import torch
from _model_index import registered_model
from mmcv.image import imread
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate
from mmengine.runner import load_checkpoint
from mmpretrain.apis import ImageClassificationInferencer, inference_model
from mmpretrain.registry import MODELS, TRANSFORMS
from PIL import Image

import vlltr_mm  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LGR_CONFIG = osp.join(REPO, 'configs', 'vlltr', 'lgr_r50_imagenet-lt.py')
CLASSES = ['cat', 'dog', 'bird', 'fish', 'frog']
NUM_ANCHORS = 3
EMBED_DIM = 16  # of 'vlltr-tiny-rn'

CONFIG_TEXT = f'''
_base_ = [{LGR_CONFIG!r}]
model = dict(
    backbone=dict(model_name='vlltr-tiny-rn'),
    head=dict(num_classes={len(CLASSES)}, in_channels={EMBED_DIM},
              num_anchors={NUM_ANCHORS}))
data_preprocessor = dict(num_classes={len(CLASSES)})
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=32, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs'),
]
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
custom_hooks = []
load_from = None
'''


def build_model(cfg):
    model_cfg = cfg.model.copy()
    model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return MODELS.build(model_cfg)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Config, checkpoints with and without anchors, and a PNG image."""
    root = tmp_path_factory.mktemp('lgr_inference')
    cfg_path = root / 'lgr_tiny.py'
    cfg_path.write_text(CONFIG_TEXT)
    cfg = Config.fromfile(str(cfg_path))

    torch.manual_seed(0)
    model = build_model(cfg)
    meta = {'dataset_meta': {'classes': list(CLASSES)}}
    bare = root / 'no_anchors.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': meta}, bare)

    anchors = torch.randn(len(CLASSES), NUM_ANCHORS, EMBED_DIM)
    mask = torch.ones(len(CLASSES), NUM_ANCHORS, dtype=torch.bool)
    mask[1, -1] = False  # a class with fewer sentences than M
    model.head.set_anchors(anchors, mask, logit_scale=50.0)
    ckpt = root / 'lgr_tiny.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': meta}, ckpt)

    rng = np.random.default_rng(0)
    image = root / 'image.png'
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
        image)
    return dict(cfg_path=str(cfg_path), cfg=cfg, ckpt=str(ckpt),
                bare=str(bare), image=str(image))


def head_prediction(files):
    """The same image through the test pipeline and the head's predict."""
    cfg = files['cfg']
    model = build_model(cfg)
    load_checkpoint(model, files['ckpt'], map_location='cpu')
    model.eval()
    pipeline = Compose(
        [TRANSFORMS.build(t) for t in cfg.test_dataloader.dataset.pipeline])
    data = default_collate([pipeline(dict(img_path=files['image']))])
    with torch.no_grad():
        inputs = model.data_preprocessor(data, False)['inputs']
        feats = model.extract_feat(inputs)
        sample = model.head.predict(feats)[0]
        logits_image, logits_text = model.head.branch_logits(feats)
    alpha = cfg.model.head.alpha
    fused = (alpha * logits_image.softmax(-1) +
             (1 - alpha) * logits_text.softmax(-1))[0]
    return sample, fused


def check_result(result, sample, fused):
    assert set(result) == {
        'pred_scores', 'pred_label', 'pred_score', 'pred_class'
    }
    assert result['pred_class'] in CLASSES
    assert result['pred_class'] == CLASSES[result['pred_label']]
    assert 0 < result['pred_score'] <= 1
    scores = result['pred_scores']
    assert scores.shape == (len(CLASSES), )
    assert scores.sum() == pytest.approx(1.0, abs=1e-5)
    assert result['pred_score'] == pytest.approx(scores.max())
    # The score every consumer sees is the head's fused score (the α-mix
    # of the LGR config), and the label is the head's own.
    assert result['pred_label'] == int(sample.pred_label)
    np.testing.assert_allclose(scores, sample.pred_score.numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores, fused.numpy(), rtol=1e-5, atol=1e-6)


def test_image_classification_inferencer(files):
    inferencer = ImageClassificationInferencer(
        files['cfg_path'], pretrained=files['ckpt'], device='cpu')
    assert inferencer.classes == CLASSES  # from the checkpoint's meta
    result = inferencer(files['image'])[0]
    sample, fused = head_prediction(files)
    check_result(result, sample, fused)
    # The per-branch scores stay in the data sample.
    data_sample = inferencer(files['image'], return_datasamples=True)[0]
    assert data_sample.pred_score_image.shape == (len(CLASSES), )
    assert data_sample.pred_score_text.shape == (len(CLASSES), )

    # A decoded BGR array, batched with the file, gives the same answer.
    both = inferencer([files['image'], imread(files['image'])],
                      batch_size=2)
    for res in both:
        assert res['pred_label'] == result['pred_label']
        np.testing.assert_allclose(res['pred_scores'],
                                   result['pred_scores'], rtol=1e-5,
                                   atol=1e-6)


def test_inference_model(files, tmp_path):
    """``inference_model`` picks its inferencer from a model-index entry,
    as for MMPretrain's own models: register one for the config."""
    with registered_model(tmp_path, files['ckpt'], files['cfg_path']) as name:
        result = inference_model(name, files['image'], device='cpu')
    sample, fused = head_prediction(files)
    check_result(result, sample, fused)


def test_checkpoint_without_anchors(files):
    inferencer = ImageClassificationInferencer(
        files['cfg_path'], pretrained=files['bare'], device='cpu')
    assert not inferencer.model.head.has_anchors
    with pytest.raises(RuntimeError, match='LGRHead has no anchor sentences'):
        inferencer(files['image'])
