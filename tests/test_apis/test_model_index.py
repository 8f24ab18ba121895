"""vlltr_mm's model index in MMPretrain's ``ModelHub`` (issue 12).

``import vlltr_mm`` registers ``model-index.yml``; the demo LGR model is
then built by name, given a checkpoint made here (random head, anchors set
as the AnSS hook leaves them, class names in its meta as MMEngine's
CheckpointHook writes them) and run through ``inference_model``.
"""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
import yaml
from mmengine.config import Config
from mmpretrain import get_model, inference_model, list_models
from mmpretrain.apis.model import ModelHub
from PIL import Image

import vlltr_mm
from vlltr_mm.utils.model_index import mim_root

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_LGR = 'vlltr-lgr_demo_fmnist-lt'
CLASSES = [f'class_{i}' for i in range(10)]  # the demo config's 10


def test_index_registered_on_import():
    names = list_models('*vlltr*')
    # Stage 1 and 2 x {R50, ViT-B/16} x 3 datasets, plus the CPU demo's.
    assert len(names) == 2 * 2 * 3 + 2
    assert DEMO_LGR in names and 'vlltr-cvlp_r50_imagenet-lt' in names
    # A second registration (e.g. a reload) changes nothing and does not
    # trip ModelHub's name-conflict check.
    assert sorted(vlltr_mm.register_model_index()) == names
    # In a checkout the index and configs are read from the repository.
    assert mim_root() == REPO


def test_every_entry_names_a_shipped_config():
    metafile = yaml.safe_load(
        open(osp.join(REPO, 'configs', 'vlltr', 'metafile.yml')))
    configs = sorted(m['Config'] for m in metafile['Models'])
    shipped = sorted(
        osp.relpath(p, REPO) for p in glob.glob(
            osp.join(REPO, 'configs', 'vlltr', '**', '*_*.py'),
            recursive=True)
        if osp.basename(p).startswith(('cvlp_', 'lgr_')))
    missing = sorted(set(shipped) - set(configs))
    assert missing == [c for c in missing if '/demo/' in c], missing
    for model in metafile['Models']:
        # No weights are released: no entry may point to any.
        assert 'Weights' not in model, model['Name']
        assert model['Results'][0]['Task'] == 'Image Classification'
        info = ModelHub.get(model['Name'])
        assert isinstance(info.config, Config)
        assert info.config.filename == osp.join(REPO, model['Config'])


@pytest.fixture(scope='module')
def demo_files(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp('model_index')
    torch.manual_seed(0)
    model = get_model(DEMO_LGR, device='cpu')
    head = model.head
    anchors = torch.randn(len(CLASSES), head.num_anchors, head.in_channels)
    mask = torch.ones(len(CLASSES), head.num_anchors, dtype=torch.bool)
    head.set_anchors(anchors, mask, logit_scale=50.0)
    ckpt = root / 'lgr_demo.pth'
    torch.save({'state_dict': model.state_dict(),
                'meta': {'dataset_meta': {'classes': CLASSES}}}, ckpt)
    image = root / 'image.png'
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).save(
        image)
    return dict(ckpt=str(ckpt), image=str(image))


def test_inference_model_by_name(demo_files):
    result = inference_model(DEMO_LGR, demo_files['image'],
                             pretrained=demo_files['ckpt'], device='cpu')
    assert result['pred_class'] in CLASSES
    assert result['pred_class'] == CLASSES[result['pred_label']]
    assert result['pred_scores'].shape == (len(CLASSES), )

    # The same model by name, loaded by get_model: the same prediction.
    model = get_model(DEMO_LGR, pretrained=demo_files['ckpt'], device='cpu')
    assert model._dataset_meta['classes'] == CLASSES  # get_model's
    assert model.head.has_anchors
    again = inference_model(model, demo_files['image'])
    assert again['pred_label'] == result['pred_label']
    np.testing.assert_allclose(again['pred_scores'], result['pred_scores'],
                               rtol=1e-5, atol=1e-6)
