"""Config mistakes are named: typos of Runner keys, overrides that change
nothing, values of the wrong type, spaces in ``--cfg-options`` values."""
import argparse
import glob
import inspect
import os.path as osp
import subprocess
import sys

import pytest
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from vlltr_mm.utils.config_checks import (
    ConfigOptionsAction,
    ConfigWarning,
    check_config,
    config_problems,
    read_keys,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SHIPPED = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                         recursive=True) if '_base_' not in p)

CONFIG = '''
data_root = 'data/tiny'
batch_size = 4
max_epochs = 3
model = dict(type='M', backbone=dict(depth=18, frozen=False))
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(data_root=data_root, ann_file=f'{data_root}/train.txt'),
    pipeline=[dict(type='LoadImageFromFile'), dict(type='Resize', scale=8)])
train_cfg = dict(by_epoch=True, max_epochs=max_epochs)
randomness = dict(seed=0, deterministic=False)
work_dir = 'work_dirs/tiny'
'''


@pytest.fixture
def cfg(tmp_path):
    path = tmp_path / 'tiny.py'
    path.write_text(CONFIG)
    return Config.fromfile(str(path))


def parse(action, *pairs):
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=action)
    return parser.parse_args(['--cfg-options', *pairs]).cfg_options


def test_read_keys_are_the_runners():
    """Every Runner argument that from_cfg fills is a read key (the
    reference: Runner.__init__'s signature), and so are the keys it reads
    later (model_wrapper_cfg, compile); helper variables are not."""
    params = set(inspect.signature(Runner.__init__).parameters) - {
        'self', 'cfg'}
    assert params <= read_keys()
    assert {'model_wrapper_cfg', 'find_unused_parameters', 'compile',
            'custom_imports'} <= read_keys()
    assert not {'data_root', 'batch_size', 'max_epochs'} & read_keys()


@pytest.mark.parametrize('path', SHIPPED,
                         ids=[osp.relpath(p, REPO) for p in SHIPPED])
def test_shipped_configs_pass(path):
    assert config_problems(Config.fromfile(path)) == ([], [])


def test_file_keys(tmp_path):
    path = tmp_path / 'typos.py'
    path.write_text(CONFIG + "load_form = 'a.pth'\nresume_from = 'b.pth'\n"
                    "vis_backends = [dict(type='LocalVisBackend')]\n")
    errors, warns = config_problems(Config.fromfile(str(path)))
    assert errors == []
    assert warns == [
        f"{path}: nothing reads the top-level key 'load_form'; did you mean "
        "'load_from'? (MMEngine reads 'load_from' and ignores 'load_form')",
        f"{path}: 'resume_from' is an MMCV 1.x / MMClassification 0.x key "
        'that MMEngine ignores; use resume=True with load_from',
    ]  # helper variables (data_root, vis_backends ...) pass


def test_option_types(cfg):
    where = cfg.filename
    errors, warns = config_problems(cfg, parse(
        DictAction, 'train_cfg.max_epochs=one', 'train_cfg.by_epoch=yes',
        'randomness.seed=7', 'work_dir=123', 'model.backbone=r50'))
    assert errors == [
        f'--cfg-options train_cfg.max_epochs=one: {where} has 3 here and '
        "expects a number, but 'one' is not; give one, e.g. "
        'train_cfg.max_epochs=3',
        f'--cfg-options train_cfg.by_epoch=yes: {where} has True here and '
        "expects True or False, but 'yes' is not; give one, e.g. "
        'train_cfg.by_epoch=True',
    ]
    assert warns == [
        f"--cfg-options work_dir: {where} has the string 'work_dirs/tiny' "
        'here, the option gives int 123',
        "--cfg-options model.backbone='r50' replaces the whole dict that "
        f'{where} has there (depth, frozen); set model.backbone.<name>=... '
        'to change one entry',
    ]


def test_option_keys(cfg):
    where = cfg.filename
    errors, warns = config_problems(cfg, parse(
        DictAction, 'batch_size=8', 'data_root=/data', 'load_form=x.pth',
        'max_epoch=5', 'train_cfg.max_epoch=5', 'load_from=x.pth',
        'train_dataloader.pipeline.1.scale=16', 'model.backbone.out=3',
        'log_level=DEBUG'))
    assert errors == []
    assert warns == [
        f"--cfg-options batch_size: 'batch_size' is a variable of {where}, "
        'used while the file was read; overriding it afterwards changes none '
        'of the values computed from it (keys that hold its value 4: '
        'train_dataloader.batch_size). Override those keys instead.',
        f"--cfg-options data_root: 'data_root' is a variable of {where}, "
        'used while the file was read; overriding it afterwards changes none '
        "of the values computed from it (keys that hold its value "
        "'data/tiny': train_dataloader.dataset.data_root, "
        'train_dataloader.dataset.ann_file). Override those keys instead.',
        "--cfg-options load_form: nothing reads a top-level 'load_form' and "
        f"{where} does not define it; did you mean 'load_from'?",
        "--cfg-options max_epoch: nothing reads a top-level 'max_epoch' and "
        f'{where} does not define it; it has no effect.',
        f'--cfg-options train_cfg.max_epoch: {where} has no '
        'train_cfg.max_epoch; did you mean train_cfg.max_epochs? (a new key '
        'is passed on as given)',
    ]
    # A tool that rebases data_root itself (config_roots) says so.
    assert len(config_problems(cfg, {'data_root': '/d'}, ['data_root'])[1]
               ) == 0


def test_check_config_warns_or_refuses(cfg, monkeypatch):
    monkeypatch.delenv('VLLTR_STRICT_CONFIG', raising=False)
    monkeypatch.delenv('RANK', raising=False)
    with pytest.warns(ConfigWarning, match="did you mean 'load_from'"):
        check_config(cfg, {'load_form': 'x'})
    with pytest.raises(ValueError, match=r'config problems:\n  '
                       r'--cfg-options train_cfg\.max_epochs=one'):
        check_config(cfg, {'train_cfg.max_epochs': 'one'})
    monkeypatch.setenv('VLLTR_STRICT_CONFIG', '1')
    with pytest.raises(ValueError, match=r'\(VLLTR_STRICT_CONFIG is set\):'
                       r"\n  --cfg-options load_form: .*\n  --cfg-options "
                       'max_epoch'):
        check_config(cfg, {'load_form': 'x', 'max_epoch': 2})
    check_config(cfg, {'train_cfg.max_epochs': 2}, strict=False)


def test_options_action_keeps_spaces():
    opts = parse(ConfigOptionsAction, 'a=/data/my set/x', "b='/p, q'",
                 'c="1"', 'd= 2.5 ', 'e=None', 'f=[1, 2]', 'g=1,2',
                 'h=(a,b)', 'i=True')
    assert opts == {'a': '/data/my set/x', 'b': '/p, q', 'c': '1',
                    'd': 2.5, 'e': None, 'f': [1, 2], 'g': [1, 2],
                    'h': ('a', 'b'), 'i': True}
    # MMEngine's own action drops the spaces (the reported bug).
    assert parse(DictAction, 'a=/data/my set/x') == {'a': '/data/myset/x'}
    # Without spaces or quotes both parse alike.
    plain = ['k=3', 'l=x.pth', 'm=[(1,2),[a,b],c]', 'n=false', 'o=1e-4']
    assert parse(ConfigOptionsAction, *plain) == parse(DictAction, *plain)


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_tools_name_the_key(tool, tmp_path):
    """The user path: a misspelt key warns, a bad value stops the tool
    before the Runner is built (no data needed)."""
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(CONFIG)
    args = [str(cfg)] + (['missing.pth'] if tool == 'test' else [])
    proc = subprocess.run(
        [sys.executable, f'tools/{tool}.py', *args, '--work-dir',
         str(tmp_path / 'work'), '--cfg-options', 'load_form=x.pth',
         'train_cfg.max_epochs=one'],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "did you mean 'load_from'?" in proc.stderr
    assert ('ValueError: config problems:\n  --cfg-options '
            f'train_cfg.max_epochs=one: {cfg} has 3 here') in proc.stderr


@pytest.mark.parametrize('tool, extra', [('tools/train.py', []),
                                         ('tools/test.py', ['x.pth'])])
def test_tools_keep_spaces(load_tool, tool, extra):
    args = load_tool(tool).parse_args([
        'cfg.py', *extra, '--cfg-options',
        'train_dataloader.dataset.data_root=/data/my set'
    ])
    assert args.cfg_options == {
        'train_dataloader.dataset.data_root': '/data/my set'
    }
