"""The 12 shipped GPU configs run the authors' released recipe.

Every expected value below is typed from the authors' repository
(ChangyaoTian/VL-LTR): the config file named in ``AUTHORS``, ``main.py``'s
argparse defaults for what a config does not set, ``optim_factory.py`` for
the parameter groups, ``models/finetune.py`` for the LGR models and
``engine.py`` for the inference fusion. docs/fidelity.md gives the lines.
"""
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS, PARAM_SCHEDULERS
from timm.scheduler import CosineLRScheduler

import vlltr_mm  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# main.py defaults that no released config overrides.
WARMUP_LR = 1e-6  # --warmup-lr
WEIGHT_DECAY = 0.05  # --weight-decay
SMOOTHING = 0.1  # --smoothing
MIXUP, CUTMIX = 0.8, 1.0  # --mixup, --cutmix (0 in every pretrain config)
NUM_ANCHORS = 64  # --sent-length
# stage, authors' file, lr, images per GPU, epochs, warm-up epochs, min lr,
# text lr (the LGR attention; None: every parameter at lr).
AUTHORS = {
    'cvlp_r50_imagenet-lt':
    ('cvlp', 'configs/imagelt/pretrain/pretrain_r50.py', 5e-5, 256, 50, 5,
     0.0, None),
    'cvlp_r50_places-lt':
    ('cvlp', 'configs/placeslt/pretrain/places_pretrain_r50.py', 5e-5, 256,
     50, 5, 0.0, None),
    # No min_lr / warmup_epochs in the iNat config: main.py's 1e-5 and 5.
    'cvlp_r50_inat2018':
    ('cvlp', 'configs/inat/pretrain/inat_pretrain_r50.py', 5e-4, 256, 100,
     5, 1e-5, None),
    'cvlp_vit-b16_imagenet-lt':
    ('cvlp', 'configs/imagelt/pretrain/pretrain_vit16.py', 3.5e-5, 128, 50,
     5, 0.0, None),
    'cvlp_vit-b16_places-lt':
    ('cvlp', 'configs/placeslt/pretrain/places_pretrain_vit16.py', 1e-5,
     128, 50, 5, 0.0, None),
    'cvlp_vit-b16_inat2018':
    ('cvlp', 'configs/inat/pretrain/inat_pretrain_vit16.py', 3.5e-4, 128,
     100, 5, 1e-5, None),
    'lgr_r50_imagenet-lt':
    ('lgr', 'configs/imagelt/finetune/finetune_r50.py', 1e-3, 128, 50, 0,
     0.0, 1e-6),
    'lgr_r50_places-lt':
    ('lgr', 'configs/placeslt/finetune/places_finetune_r50.py', 1e-4, 128,
     50, 0, 0.0, 1e-6),
    'lgr_r50_inat2018':
    ('lgr', 'configs/inat/finetune/inat_finetune_r50.py', 2e-5, 128, 360, 0,
     0.0, 1e-6),
    'lgr_vit-b16_imagenet-lt':
    ('lgr', 'configs/imagelt/finetune/finetune_vit16.py', 1e-3, 128, 50, 0,
     0.0, 1e-6),
    'lgr_vit-b16_places-lt':
    ('lgr', 'configs/placeslt/finetune/places_finetune_vit16.py', 5e-5, 128,
     50, 0, 0.0, 1e-6),
    'lgr_vit-b16_inat2018':
    ('lgr', 'configs/inat/finetune/inat_finetune_vit16.py', 2e-5, 128, 360,
     0, 0.0, 1e-6),
}


def load(name):
    return Config.fromfile(osp.join(REPO, 'configs', 'vlltr', f'{name}.py'))


def dataset_of(name):
    return name.rsplit('_', 1)[1]


@pytest.mark.parametrize('name', sorted(AUTHORS))
def test_recipe_values(name):
    stage, _, lr, batch, epochs, warmup, min_lr, text_lr = AUTHORS[name]
    cfg = load(name)
    inat = dataset_of(name) == 'inat2018'
    optim = cfg.optim_wrapper.optimizer
    assert optim.type == 'AdamW' and optim.lr == lr
    assert optim.weight_decay == WEIGHT_DECAY and optim.eps == 1e-8
    assert tuple(optim.betas) == (0.9, 0.999)
    assert 'clip_grad' not in cfg.optim_wrapper
    assert cfg.train_dataloader.batch_size == batch
    assert cfg.auto_scale_lr.base_batch_size == 8 * batch
    assert cfg.train_cfg.max_epochs == epochs
    assert cfg.train_dataloader.drop_last is True
    # weight_sample=True, use_sqrt_freq=True in every released config.
    assert cfg.train_dataloader.sampler.type == 'SquareRootSampler'
    backbone = cfg.model.backbone
    if stage == 'cvlp':
        assert cfg.model.loss_lambda == 0.5  # distillation_beta
        assert cfg.model.ccl_loss.label_smoothing == SMOOTHING
        assert 'augments' not in (cfg.model.get('train_cfg') or {})
        # train_mode=False (ImageNet-LT, Places-LT): BatchNorm in eval;
        # the iNat configs keep main.py's train_mode=True.
        assert backbone.norm_eval is (not inat)
        assert not backbone.get('frozen', False)
        assert not cfg.model.text_encoder.get('frozen', False)
        assert 'custom_keys' not in cfg.optim_wrapper.paramwise_cfg
    else:
        head = cfg.model.head
        assert head.type == 'LGRHead'
        assert head.num_anchors == NUM_ANCHORS
        # engine.evaluate_LT: alpha = 0.7 if 'INAT' else 0.2.
        assert head.alpha == (0.7 if inat else 0.2)
        assert head.loss.label_smooth_val == SMOOTHING
        augments = {a.type: a.alpha for a in cfg.model.train_cfg.augments}
        assert augments == {'Mixup': MIXUP, 'CutMix': CUTMIX}
        # LGR_*_v_detach_img_grad on iNat: tower trained, |G| detached;
        # LGR_r50 / LGR_vit16 elsewhere: img_grad=False.
        assert backbone.frozen is (not inat)
        assert head.get('detach_text_norm', False) is inat
        # encode_image() calls visual.eval(): BatchNorm always in eval.
        assert backbone.norm_eval is True
        keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
        for key in ('head.attn_norm', 'head.attn_proj'):
            assert keys[key].lr == text_lr
        anss = [h for h in cfg.custom_hooks
                if h.type == 'AnchorSentenceSelectionHook'][0]
        if inat:  # select_sent='train': the training loader's draws
            assert anss.pool == dict(split='train', max_per_class=50,
                                     mode='first', draw='sqrt',
                                     pipeline='train', seed=0)
        else:  # select_sent='val' (test=True): the val split, once each
            assert anss.pool == dict(split='val', max_per_class=None,
                                     mode='first')


def authors_lrs(lr, epochs, warmup, min_lr):
    """The lr of each epoch as the authors' DeiT loop sets it: timm's
    CosineLRScheduler as their create_scheduler() builds it, step(epoch)
    after each epoch. (The installed timm's _get_lr equals timm 0.3.2's for
    these arguments: cycle_mul 1, cycle_decay 1, k_decay 1.)"""
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    sched = CosineLRScheduler(
        opt, t_initial=epochs, lr_min=min_lr, warmup_lr_init=WARMUP_LR,
        warmup_t=warmup, cycle_limit=1, t_in_epochs=True)
    out = []
    for epoch in range(epochs):
        out.append(opt.param_groups[0]['lr'])
        sched.step(epoch)
    return out


def our_lrs(cfg, epochs):
    """The lr of each epoch under the config's MMEngine schedulers, stepped
    as ParamSchedulerHook steps by-epoch schedulers."""
    model = torch.nn.Linear(2, 2)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    scheds = cfg.param_scheduler
    scheds = scheds if isinstance(scheds, list) else [scheds]
    scheds = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper))
              for s in scheds]
    out = []
    for _ in range(epochs):
        out.append(wrapper.param_groups[0]['lr'])
        for s in scheds:
            s.step()
    return out


@pytest.mark.parametrize('name', sorted(AUTHORS))
def test_lr_schedule_per_epoch(name):
    _, _, lr, _, epochs, warmup, min_lr, _ = AUTHORS[name]
    expected = authors_lrs(lr, epochs, warmup, min_lr)
    got = our_lrs(load(name), epochs)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-15)
    # The schedule is not trivially flat: it decays to (about) min_lr.
    assert expected[-1] < 0.01 * lr + min_lr


def param_groups(model, cfg):
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    out = {}
    for group in wrapper.param_groups:
        for p in group['params']:
            out[id(p)] = (group['lr'], group['weight_decay'])
    return out


def authors_decay(name, param):
    """optim_factory.add_weight_decay: no decay iff 1-D or '*.bias'."""
    return not (param.ndim == 1 or name.endswith('.bias'))


def test_weight_decay_groups_cvlp(tmp_path):
    cfg = load('cvlp_vit-b16_imagenet-lt')
    tiny = 'vlltr-tiny-vit'  # a ViT: class_embedding and in_proj_bias
    cfg.model.backbone.update(model_name=tiny, pretrained=None)
    cfg.model.text_encoder.update(model_name=tiny, pretrained=None)
    cfg.model.corpus = dict(type='ClassTextCorpus', class_names=['a', 'b'],
                            templates='simple', cache_dir=str(tmp_path))
    cfg.model.teacher = dict(cache_dir=str(tmp_path))
    model = MODELS.build(cfg.model)
    groups = param_groups(model, cfg)
    lr = AUTHORS['cvlp_vit-b16_imagenet-lt'][2]
    named = dict(model.named_parameters())
    # The three parameters where MMEngine's usual norm/bias rule and the
    # authors' rule disagree.
    assert named['logit_scale'].ndim == 0
    assert groups[id(named['logit_scale'])] == (lr, WEIGHT_DECAY)
    ce = [n for n in named if n.endswith('class_embedding')]
    ipb = [n for n in named if n.endswith('in_proj_bias')]
    assert ce and ipb
    for n in ce + ipb:
        assert groups[id(named[n])] == (lr, 0.0), n
    for n, p in named.items():
        want = WEIGHT_DECAY if authors_decay(n, p) else 0.0
        assert groups[id(p)] == (lr, want), n


@pytest.mark.parametrize('name', ['lgr_r50_imagenet-lt', 'lgr_r50_inat2018'])
def test_weight_decay_and_lr_groups_lgr(name):
    _, _, lr, _, _, _, _, text_lr = AUTHORS[name]
    cfg = load(name)
    cfg.model.backbone.update(model_name='vlltr-tiny-rn', pretrained=None)
    cfg.model.head.update(in_channels=16, num_classes=5)
    model = MODELS.build(cfg.model)
    groups = param_groups(model, cfg)
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    # Frozen tower on ImageNet-LT / Places-LT, trained on iNat.
    assert any(n.startswith('backbone.') for n, _ in trained) == (
        name.endswith('inat2018'))
    for n, p in trained:
        # Every parameter of the authors' model whose name lacks 'visual'
        # (the attention, text_block.attn) learns at text_lr; the MLP
        # (text_block.visual_fc) and the tower at lr.
        want_lr = text_lr if n.startswith('head.attn_') else lr
        want_wd = WEIGHT_DECAY if authors_decay(n, p) else 0.0
        got_lr, got_wd = groups[id(p)]
        assert math.isclose(got_lr, want_lr, rel_tol=1e-9), n
        assert got_wd == want_wd, n
    names = {n for n, _ in trained}
    assert {'head.attn_proj_q.weight', 'head.attn_norm_q.weight',
            'head.mlp.0.weight', 'head.mlp.0.bias'} <= names
