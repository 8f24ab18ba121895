"""RunSummaryHook: a console a person can read (real runners, real logs)."""
import glob
import hashlib
import logging
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import vlltr_mm  # noqa: F401  (registers the hooks)
from vlltr_mm.engine.hooks.frozen_params_log import (
    FrozenParamsFilter,
    covering_prefixes,
    frozen_params_summary,
)
from vlltr_mm.models.backbones import OpenCLIPVisual

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LGR = 'configs/vlltr/lgr_r50_imagenet-lt.py'
SKIPPED = '{} is skipped since its requires_grad=False'

pytestmark = pytest.mark.usefixtures('one_thread')


def sha12(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


def test_covering_prefixes_by_hand():
    names = ['a.x.w', 'a.x.b', 'a.y.w', 'b.w', 'b.u.w', 'c', 'd.w']
    # a.x fully frozen, a.y not; b fully frozen; c a root parameter.
    frozen = ['a.x.w', 'a.x.b', 'b.w', 'b.u.w', 'c']
    assert covering_prefixes(frozen, names) == ['a.x.*', 'b.*', 'c']
    assert covering_prefixes(['a.x.w'], names) == ['a.x.w']
    assert covering_prefixes([], names) == []


def test_filter_drops_exactly_the_skip_message():
    logger = logging.Logger('frozen_filter_test')
    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger.addHandler(handler)
    drop = FrozenParamsFilter()
    logger.addFilter(drop)
    # MMEngine's wording; a root-module parameter comes as '.name'.
    logger.warning(SKIPPED.format('backbone.visual.conv1.weight'))
    logger.warning(SKIPPED.format('.logit_scale'))
    kept = ['head.fc.weight is duplicate. It is skipped since '
            'bypass_duplicate=True',
            'x is skipped since its requires_grad=False (and more)']
    for message in kept:
        logger.warning(message)
    assert seen == kept
    assert drop.names == ['backbone.visual.conv1.weight', 'logit_scale']


class TowerModel(BaseModel):
    """A frozen tiny CLIP image tower and a trainable linear head."""

    def __init__(self):
        super().__init__()
        self.backbone = OpenCLIPVisual('vlltr-tiny-rn', frozen=True)
        self.head = nn.Linear(16, 2)

    def forward(self, inputs, labels, mode='tensor'):
        out = self.head(self.backbone(inputs)[0])
        if mode == 'loss':
            return dict(loss=nn.functional.cross_entropy(out, labels))
        return out


class Images(Dataset):

    def __len__(self):
        return 4

    def __getitem__(self, i):
        gen = torch.Generator().manual_seed(i)
        return dict(inputs=torch.rand(3, 32, 32, generator=gen),
                    labels=torch.tensor(i % 2))


def tower_runner(work_dir, load_from=None):
    return Runner(
        model=TowerModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=Images(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=2,
            num_workers=0),
        # Any paramwise_cfg makes MMEngine warn per frozen tensor.
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01,
                                          weight_decay=1e-4),
                           paramwise_cfg=dict(bias_decay_mult=0.0)),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            run_summary=dict(type='RunSummaryHook')),
        load_from=load_from,
        default_scope='mmpretrain',
        experiment_name=f'summary_{osp.basename(str(work_dir))}')


def log_of(runner):
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()


def test_frozen_summary_and_weights_source(tmp_path):
    runner = tower_runner(tmp_path / 'random')
    runner.train()
    log = log_of(runner)
    frozen = [p for p in runner.model.parameters() if not p.requires_grad]
    tensors, numel = len(frozen), sum(p.numel() for p in frozen)
    assert tensors == len(list(runner.model.backbone.parameters()))
    assert 'requires_grad=False' not in log
    assert log.count('are not optimised') == 1
    assert (f'{tensors} frozen parameter tensors ({numel:,} parameters) '
            'are not optimised: backbone.*\n') in log
    assert re.search(r"WARNING - backbone \('vlltr-tiny-rn'\): random "
                     r'initial weights \(pretrained=None\) and no '
                     r'checkpoint loaded', log)

    ckpt = osp.join(runner.work_dir, 'epoch_1.pth')
    again = tower_runner(tmp_path / 'loaded', load_from=ckpt)
    again.train()
    log = log_of(again)
    assert 'random initial weights' not in log
    assert (f'Run summary: weights load_from {ckpt} (sha256 '
            f'{sha12(ckpt)})') in log


def test_frozen_params_summary_by_hand():
    model = TowerModel()
    names = [n for n, _ in model.backbone.named_parameters(prefix='backbone')]
    assert names[:2] == ['backbone.visual.conv1.weight',
                         'backbone.visual.bn1.weight']
    # A repeated name counts once; conv1 has no other parameter, bn1 has
    # its (unfrozen) bias.
    line = frozen_params_summary(names[:2] + names[:1], model, 1)
    numel = sum(p.numel() for p in list(model.backbone.parameters())[:2])
    assert line == (f'2 frozen parameter tensors ({numel:,} parameters) '
                    'are not optimised: backbone.visual.conv1.* (+1 more)')
    assert frozen_params_summary(names[:2], model).endswith(
        'backbone.visual.conv1.*, backbone.visual.bn1.weight')


@pytest.fixture(scope='module')
def lgr_run(assets, tmp_path_factory):
    """One epoch of the shipped LGR config through tools/train.py on the
    tiny AnSS data (4 classes; the last has 7 sentences for M = 8), then
    tools/test.py on its checkpoint."""
    work = tmp_path_factory.mktemp('lgr_summary')
    data = assets['data']
    opts = ['model.backbone.model_name=vlltr-tiny-rn',
            'model.head.num_classes=4', 'model.head.in_channels=16',
            'model.head.num_anchors=8', 'data_preprocessor.num_classes=4',
            'train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
            'default_hooks.logger.interval=1',
            # The tiny stage-1 file also holds a teacher entry.
            'default_hooks.checkpoint_check.allow_unexpected='
            '[text_encoder.,logit_scale,teacher.]']
    for split in ('train', 'val', 'test'):
        loader = f'{split}_dataloader'
        opts += [f'{loader}.dataset.data_root={data}',
                 f'{loader}.dataset.num_classes=4',
                 f'{loader}.dataset.pipeline.1.scale=32',
                 f'{loader}.batch_size=8', f'{loader}.num_workers=0',
                 f'{loader}.persistent_workers=False']
    opts += ['train_dataloader.dataset.pipeline.3.hparams.interpolation='
             'bilinear', 'val_dataloader.dataset.pipeline.2.crop_size=32',
             'test_dataloader.dataset.pipeline.2.crop_size=32']
    for key in ('val_evaluator', 'test_evaluator'):
        opts += [f'{key}.num_classes=4', f'{key}.topk=(1,)',
                 f'{key}.train_ann_file={data}/ImageNet_LT_train.txt']
    corpus = 'custom_hooks.0.corpus'
    opts += [f'{corpus}.labels_file={data}/labels.txt',
             f'{corpus}.wiki_dir=None', f'{corpus}.json_file={assets["json"]}',
             f'{corpus}.templates=simple', f'{corpus}.cache_dir={work}/cache',
             'custom_hooks.0.batch_size=16', 'custom_hooks.0.num_workers=0']

    def run(tool, work_dir, args=(), more_opts=()):
        proc = subprocess.run(
            [sys.executable, tool, LGR, *args, '--work-dir', work_dir,
             '--cfg-options', *opts, *more_opts],
            cwd=REPO, capture_output=True, text=True, timeout=600)
        console = proc.stdout + proc.stderr
        assert proc.returncode == 0, console[-5000:]
        logs = glob.glob(osp.join(work_dir, '*', '*.log'))
        assert len(logs) == 1, logs
        with open(logs[0]) as f:
            return console, f.read()

    train_dir = str(work / 'run')
    console, log = run('tools/train.py', train_dir,
                       more_opts=[f'load_from={assets["ckpt"]}'])
    tested = osp.join(train_dir, 'epoch_1.pth')
    _, test_log = run('tools/test.py', str(work / 'test'), [tested])
    return dict(console=console, log=log, test_log=test_log,
                ckpt=assets['ckpt'], tested=tested,
                artifact=osp.join(train_dir, 'anss_anchors.pth'))


def test_lgr_console_is_readable(lgr_run):
    for text in (lgr_run['console'], lgr_run['log']):
        assert 'requires_grad=False' not in text
        assert 'initialized randomly' not in text
        assert 'do not match exactly' not in text
        # MMEngine's own key dump used to be one 7,408-character line.
        assert not [line for line in text.splitlines()
                    if len(line) > 1000 and 'key' in line]
    log = lgr_run['log']
    assert log.count('are not optimised: backbone.*') == 1
    ckpt = lgr_run['ckpt']
    assert (f'Partial load of {ckpt} allowed by the config: 15 missing '
            'keys keep the initial values (head. 15); 19 unexpected keys '
            'ignored (text_encoder. 17, logit_scale 1, teacher. 1).') in log


def test_lgr_summary_line(lgr_run):
    lines = [line for line in lgr_run['log'].splitlines()
             if 'Run summary: ' in line]
    assert len(lines) == 1, lines
    line = lines[0]
    ckpt, sha = lgr_run['ckpt'], sha12(lgr_run['ckpt'])
    # 3 classes with >= 8 sentences, one with the 7 templates only.
    assert ('LGR head: alpha=0.2 (P = 0.2 P^I + 0.8 P^T), post-hoc tau=0 '
            '(no adjustment); anchors 4 classes x M=8 (31 filled, 1 '
            'padded), text logit scale 20') in line
    assert f"AnSS 'anss' ({lgr_run['artifact']}) " in line
    assert f'from stage-1 checkpoint {ckpt} (sha256 {sha})' in line
    assert line.endswith(f'weights load_from {ckpt} (sha256 {sha})')


def test_lgr_test_run_summary(lgr_run):
    # tools/test.py: the anchors' origin comes from the checkpoint's AnSS
    # record, the weights from the tested file.
    lines = [line for line in lgr_run['test_log'].splitlines()
             if 'Run summary: ' in line]
    assert len(lines) == 1, lines
    ckpt, tested = lgr_run['ckpt'], lgr_run['tested']
    assert (f"AnSS 'anss' ({lgr_run['artifact']}) from stage-1 checkpoint "
            f'{ckpt} (sha256 {sha12(ckpt)})') in lines[0]
    assert lines[0].endswith(
        f'weights checkpoint {tested} (sha256 {sha12(tested)})')
