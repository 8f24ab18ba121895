"""Loading weights outside a Runner refuses a checkpoint that does not fit.

MMPretrain's ``get_model`` / ``ImageClassificationInferencer`` load with
MMEngine's non-strict ``load_checkpoint``; ``StrictLoadMixin`` on
``VLLTRImageClassifier`` and ``CVLP`` makes a misfit an error. Inside a
Runner, ``CheckpointCheckHook`` decides with the config's allowances.
Configs: the shipped LGR config with the tiny random open_clip ResNet
(embedding 16) and an FC head, and a tiny CVLP.
"""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain import get_model
from mmpretrain.apis import ImageClassificationInferencer
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch.utils.data import Dataset

import vlltr_mm  # noqa: F401  (registers the models)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LGR_CONFIG = osp.join(REPO, 'configs', 'vlltr', 'lgr_r50_imagenet-lt.py')
TINY = 'vlltr-tiny-rn'
CLASSES = ['cat', 'dog', 'bird', 'fish', 'frog']

pytestmark = pytest.mark.usefixtures('one_thread')


def fc_config(num_classes=len(CLASSES)):
    """The FC stage: LGR config, tiny tower, a linear head."""
    return f'''
_base_ = [{LGR_CONFIG!r}]
model = dict(
    backbone=dict(model_name={TINY!r}),
    head=dict(_delete_=True, type='LinearClsHead',
              num_classes={num_classes}, in_channels=16),
    train_cfg=None)
data_preprocessor = dict(num_classes={num_classes})
'''


def cvlp_config(cache_dir):
    return f'''
model = dict(
    type='CVLP',
    backbone=dict(type='OpenCLIPVisual', model_name={TINY!r}),
    text_encoder=dict(type='OpenCLIPTextEncoder', model_name={TINY!r}),
    corpus=dict(type='ClassTextCorpus', class_names={CLASSES!r},
                templates='simple', cache_dir={str(cache_dir)!r}),
    distill_loss=dict(type='CLIPDistillationLoss'),
    teacher=dict(cache_dir={str(cache_dir)!r}))
'''


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """Configs and checkpoints of the FC and CVLP stages."""
    root = tmp_path_factory.mktemp('strict_load')
    out = {}
    for name, text in (('fc', fc_config()), ('fc4', fc_config(4)),
                       ('cvlp', cvlp_config(root / 'cache'))):
        out[name] = str(root / f'{name}.py')
        (root / f'{name}.py').write_text(text)
    torch.manual_seed(0)
    cfg = Config.fromfile(out['fc'])
    # Saved by MMPretrain's own ImageClassifier, as before this plugin's
    # class existed: the keys are the same.
    fc_model = MODELS.build(dict(cfg.model, type='ImageClassifier'))
    cvlp_model = MODELS.build(Config.fromfile(out['cvlp']).model)
    for name, model in (('fc_ckpt', fc_model), ('cvlp_ckpt', cvlp_model)):
        out[name] = str(root / f'{name}.pth')
        torch.save({'state_dict': model.state_dict(), 'meta': {}},
                   out[name])
    out['fc_state'] = fc_model.state_dict()
    return out


def test_get_model_loads_a_fitting_checkpoint(files):
    # A checkpoint written with type='ImageClassifier' loads unchanged.
    model = get_model(files['fc'], pretrained=files['fc_ckpt'],
                      device='cpu')
    assert type(model).__name__ == 'VLLTRImageClassifier'
    state = model.state_dict()
    assert state.keys() == files['fc_state'].keys()
    for key, value in files['fc_state'].items():
        assert torch.equal(state[key], value), key


def test_get_model_refuses_missing_head(files):
    # The FC config with a CVLP checkpoint: no head.fc.*, extra text tower.
    with pytest.raises(RuntimeError, match=(
            r'loaded into VLLTRImageClassifier from checkpoint '
            r'\S+/cvlp_ckpt\.pth does not fit it:\n'
            r'  missing keys \(2\): head\.fc\.bias, head\.fc\.weight\n'
            r'  unexpected keys \(\d+\): logit_scale, text_encoder\.'
            r'(.|\n)*tools/train.py with load_from')):
        get_model(files['fc'], pretrained=files['cvlp_ckpt'], device='cpu')


def test_get_model_lists_shape_mismatches(files):
    with pytest.raises(RuntimeError, match=(
            r'shape mismatches \(2\): head\.fc\.bias: checkpoint \(5,\) vs '
            r'model \(4,\), head\.fc\.weight: checkpoint \(5, 16\) vs model '
            r'\(4, 16\)')):
        get_model(files['fc4'], pretrained=files['fc_ckpt'], device='cpu')


def test_cvlp_refuses_checkpoint_without_text_tower(files):
    with pytest.raises(RuntimeError, match=(
            r'loaded into CVLP from checkpoint \S+/fc_ckpt\.pth does '
            r'not fit it:\n  missing keys \(\d+\): '
            r'logit_scale, text_encoder\.(.|\n)*unexpected keys \(2\): '
            r'head\.fc\.bias, head\.fc\.weight')):
        get_model(files['cvlp'], pretrained=files['fc_ckpt'], device='cpu')
    # Its own checkpoint loads; the frozen teacher is not part of the
    # state dict (the model rebuilds it), so it is never missing.
    model = get_model(files['cvlp'], pretrained=files['cvlp_ckpt'],
                      device='cpu')
    assert model.teacher is not None
    assert not any(k.startswith('teacher') for k in model.state_dict())


def test_inferencer_refuses_misfit(files):
    with pytest.raises(RuntimeError, match=r'missing keys \(2\): head\.fc'):
        ImageClassificationInferencer(
            model=files['fc'], pretrained=files['cvlp_ckpt'], device='cpu')


def test_switch_and_rebuilt_buffers(files):
    model = MODELS.build(Config.fromfile(files['cvlp']).model)
    state = torch.load(files['cvlp_ckpt'], weights_only=True)['state_dict']
    # Buffers the model rebuilds (open_clip's causal mask) may be in older
    # checkpoints; they are not a misfit.
    rebuilt = [
        f'{name}.{buf}' for name, module in model.named_modules()
        for buf in module._non_persistent_buffers_set
    ]
    assert rebuilt
    model.load_state_dict(
        dict(state, **{k: torch.zeros(1) for k in rebuilt}), strict=False)
    partial = {k: v for k, v in state.items() if k.startswith('backbone.')}
    with pytest.raises(RuntimeError, match='missing keys'):
        model.load_state_dict(partial, strict=False)
    model.strict_load = False  # a partial load by hand, on purpose
    model.load_state_dict(partial, strict=False)


class TinyImages(Dataset):

    def __len__(self):
        return 4

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        image = torch.randint(0, 256, (3, 32, 32), generator=g).byte()
        return dict(inputs=image,
                    data_samples=DataSample().set_gt_label(i % 2))


def test_runner_load_from_under_allowances(files, tmp_path):
    # The LGR stage's allowances: a new head, no text tower. The hook has
    # the say inside the Runner, the model's own check afterwards.
    cfg = Config.fromfile(files['fc'])
    runner = Runner(
        model=cfg.model,
        work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=TinyImages(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=4, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        default_hooks=dict(checkpoint_check=dict(
            type='CheckpointCheckHook', allow_missing=['head.'],
            allow_unexpected=['text_encoder.', 'logit_scale'])),
        load_from=files['cvlp_ckpt'],
        default_scope='mmpretrain',
        log_level='WARNING',
        experiment_name=f'strict_load_{osp.basename(str(tmp_path))}')
    runner.train()
    assert runner.epoch == 1
    cvlp = torch.load(files['cvlp_ckpt'], weights_only=True)['state_dict']
    # The frozen image tower is the checkpoint's.
    key = 'backbone.visual.conv1.weight'
    assert torch.equal(runner.model.state_dict()[key], cvlp[key])
    assert runner.model.strict_load
    with pytest.raises(RuntimeError, match=r'missing keys \(2\): head\.fc'):
        runner.model.load_state_dict(cvlp, strict=False)
