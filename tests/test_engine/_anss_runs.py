"""Tiny AnSS runs shared by the AnSS test modules: tiny long-tail images,
a random stage-1 checkpoint of the tiny CLIP, a two-description corpus and
a real MMEngine Runner config of an LGR stage 2 with the hook."""
import importlib.util
import json
import math
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmpretrain.registry import MODELS, TASK_UTILS

import vlltr_mm  # noqa: F401  (registers everything)
from vlltr_mm.engine.hooks import AnchorSentenceSelectionHook

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODEL = 'vlltr-tiny-rn'
NUM_ANCHORS = 8
LOG_SCALE = math.log(20.0)
MEAN = [0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255]
STD = [0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255]
# The DeiT-style training augmentation of the configs, at 32 px.
TRAIN_PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2,
         total_level=10, magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[104, 116, 124])),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand'),
    dict(type='PackInputs'),
]
# The authors' iNat pool, K = 3 for the tiny data.
AUTHORS_POOL = dict(split='train', max_per_class=3, mode='first',
                    draw='sqrt', pipeline='train', seed=0)


def _make_tiny_lt():
    spec = importlib.util.spec_from_file_location(
        'make_tiny_lt', osp.join(REPO, 'tools', 'data', 'make_tiny_lt.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_tiny_lt


def _save_stage1(path, seed):
    torch.manual_seed(seed)
    visual = MODELS.build(dict(type='OpenCLIPVisual', model_name=MODEL))
    text = MODELS.build(dict(type='OpenCLIPTextEncoder', model_name=MODEL))
    state = {f'backbone.{k}': v for k, v in visual.state_dict().items()}
    state.update(
        {f'text_encoder.{k}': v
         for k, v in text.state_dict().items()})
    state['logit_scale'] = torch.tensor(LOG_SCALE)
    state['teacher.ignored'] = torch.zeros(1)
    torch.save({'state_dict': state, 'meta': {}}, path)
    return path


def make_assets(root):
    """Data (4 classes, 12 / 8 / 4 / 2 training images, 3 val each), two
    corpora and two stage-1 checkpoints under ``root`` (a Path)."""
    info = _make_tiny_lt()(
        str(root / 'data'),
        num_classes=4,
        counts=[12, 8, 4, 2],
        val_per_class=3,
        test_per_class=1)
    names = info['classes']
    # Classes 0-2 get templates + descriptions (>= M sentences), class 3
    # only the 7 'simple' templates (< M = 8 -> one padded slot).
    desc = {
        names[0]: 'It is a red thing with stripes. Many red things exist. '
        'Its stripes run across the picture.',
        names[1]: 'A green object is often seen in gardens. Green is the '
        'colour of grass.',
        names[2]: 'Blue is a primary colour. The sky looks blue on clear '
        'days. Oceans also appear blue.',
    }
    json_file = root / 'desc.json'
    json_file.write_text(json.dumps(desc))
    other_json = root / 'desc_other.json'
    other_json.write_text(
        json.dumps(dict(desc, **{names[3]: 'A brand new sentence here.'})))
    return dict(
        root=root,
        data=info['root'],
        names=names,
        json=str(json_file),
        other_json=str(other_json),
        ckpt=_save_stage1(str(root / 'cvlp.pth'), 0),
        other_ckpt=_save_stage1(str(root / 'cvlp_other.pth'), 1))


def dataset_cfg(assets, split, pipeline=None):
    return dict(
        type='LongTailListDataset',
        data_root=assets['data'],
        ann_file=f'ImageNet_LT_{split}.txt',
        pipeline=pipeline or [dict(type='LoadImageFromFile'),
                              dict(type='PackInputs')])


def corpus_cfg(assets, json_key='json'):
    return dict(
        type='ClassTextCorpus',
        json_file=assets[json_key],
        templates='simple',
        tokenizer='RN50')


def built_corpus(assets, json_key='json'):
    return TASK_UTILS.build(
        dict(corpus_cfg(assets, json_key), class_names=assets['names']))


def lgr_cfg(assets, work_dir, with_hook=True, max_epochs=1,
            train_pipeline=None, **hook):
    """An LGR stage-2 config on the tiny data; ``hook`` updates the hook."""
    hook_cfg = dict(
        type='AnchorSentenceSelectionHook',
        corpus=corpus_cfg(assets),
        text_encoder=dict(type='OpenCLIPTextEncoder', model_name=MODEL),
        batch_size=5,
        num_workers=0,
        chunk_size=7)
    hook_cfg.update(hook)
    return Config(
        dict(
            model=dict(
                type='ImageClassifier',
                data_preprocessor=dict(
                    type='ClsDataPreprocessor',
                    mean=MEAN,
                    std=STD,
                    to_rgb=True),
                backbone=dict(
                    type='OpenCLIPVisual', model_name=MODEL, frozen=True),
                head=dict(
                    type='LGRHead',
                    num_classes=4,
                    in_channels=16,
                    num_anchors=NUM_ANCHORS)),
            work_dir=str(work_dir),
            train_dataloader=dict(
                dataset=dataset_cfg(assets, 'train', train_pipeline),
                sampler=dict(type='DefaultSampler', shuffle=True),
                batch_size=8,
                num_workers=0),
            val_dataloader=dict(
                dataset=dataset_cfg(assets, 'val'),
                sampler=dict(type='DefaultSampler', shuffle=False),
                batch_size=8,
                num_workers=0),
            val_evaluator=dict(type='Accuracy', topk=(1, )),
            train_cfg=dict(by_epoch=True, max_epochs=max_epochs,
                           val_interval=100),
            val_cfg=dict(),
            optim_wrapper=dict(
                optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.0)),
            default_hooks=dict(
                checkpoint=dict(type='CheckpointHook', interval=1),
                logger=dict(type='LoggerHook', interval=100)),
            custom_hooks=[hook_cfg] if with_hook else [],
            load_from=assets['ckpt'],
            resume=False,
            log_level='WARNING',
            default_scope='mmpretrain',
            randomness=dict(seed=0)))


def anss_hook(runner):
    """The runner's AnchorSentenceSelectionHook (None without one)."""
    hook = [h for h in runner.hooks
            if isinstance(h, AnchorSentenceSelectionHook)]
    return hook[0] if hook else None


def train(cfg):
    """Train ``cfg``; return the runner and its AnSS hook."""
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner, anss_hook(runner)


def log_text(runner):
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()
