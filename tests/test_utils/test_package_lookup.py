"""vlltr_mm.utils.package_lookup: MMEngine's look-ups without pkg_resources.

The functions are compared with MMEngine's own (the reference, built on
pkg_resources) where this environment has pkg_resources; the patch is
shown in a fresh interpreter in which pkg_resources cannot be imported, as
after ``pip install -U setuptools`` (>= 81).
"""
import importlib.metadata
import importlib.util
import os.path as osp
import subprocess
import sys
import textwrap
import warnings

import pytest

from vlltr_mm.utils import package_lookup as lookup

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HAS_PKG_RESOURCES = importlib.util.find_spec('pkg_resources') is not None


@pytest.fixture
def stock():
    """MMEngine's pkg_resources-based functions, unpatched."""
    if not HAS_PKG_RESOURCES:
        pytest.skip('no pkg_resources here to compare with')
    from mmengine.utils import package_utils
    with warnings.catch_warnings():  # setuptools warns about the API
        warnings.simplefilter('ignore')
        yield package_utils


def test_same_results_as_mmengine(stock, tmp_path, monkeypatch):
    # Distribution and module names differ for mmcv-lite / PyYAML.
    for package in ('mmpretrain', 'mmengine', 'mmcv-lite', 'PyYAML',
                    'numpy', 'open_clip_torch'):
        assert lookup.is_installed(package) is stock.is_installed(package)
    for package in ('mmpretrain', 'mmengine', 'mmcv-lite', 'numpy'):
        assert lookup.get_installed_path(package) == (
            stock.get_installed_path(package))
    assert lookup.get_installed_path('mmpretrain').endswith(
        osp.join('site-packages', 'mmpretrain'))
    assert lookup.package2module('mmcv-lite') == 'mmcv' == (
        stock.package2module('mmcv-lite'))
    assert lookup.package2module('PyYAML') == stock.package2module('PyYAML')
    # A distribution without top_level.txt: both refuse the same way.
    for impl in (lookup, stock):
        with pytest.raises(ValueError, match='can not infer the module name '
                           'of open_clip_torch'):
            impl.package2module('open_clip_torch')
    # A plain module and a namespace package on sys.path, no distribution.
    (tmp_path / 'lonely_module').mkdir()
    (tmp_path / 'lonely_module' / '__init__.py').write_text('')
    (tmp_path / 'namespace_only').mkdir()
    monkeypatch.syspath_prepend(str(tmp_path))
    for impl in (lookup, stock):
        assert impl.is_installed('lonely_module')
        assert impl.get_installed_path('lonely_module') == str(
            tmp_path / 'lonely_module')
        assert not impl.is_installed('namespace_only')
        with pytest.raises(RuntimeError, match='namespace_only is a '
                           'namespace package'):
            impl.get_installed_path('namespace_only')
        assert not impl.is_installed('no_such_package_vlltr')
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        lookup.get_installed_path('no_such_package_vlltr')


def test_patch_only_without_pkg_resources():
    """Here (pkg_resources present or not) the import already decided."""
    import mmengine.config.config
    import mmengine.utils
    assert lookup.patch_mmengine_package_lookups() is not HAS_PKG_RESOURCES
    ours = mmengine.config.config.is_installed is lookup.is_installed
    assert ours is not HAS_PKG_RESOURCES
    assert (mmengine.utils.get_installed_path is lookup.get_installed_path
            ) is not HAS_PKG_RESOURCES


SCRIPT = '''
import sys
sys.modules['pkg_resources'] = None  # as with setuptools >= 81
from mmengine.config import Config
cfg_file = 'configs/examples/resnet18_tiny-lt_from-mmpretrain.py'
try:
    Config.fromfile(cfg_file)
except ModuleNotFoundError as e:
    print('before:', e)
import vlltr_mm
import mmengine.utils.package_utils as package_utils
import mmengine.config.config as config_module
cfg = Config.fromfile(cfg_file)
print('after:', cfg.model.backbone.type, cfg.model.backbone.depth,
      cfg.model.head.num_classes)
print('patched:', config_module.is_installed.__module__,
      package_utils.package2module.__module__)
from mmengine.hub import get_config
print('hub:', get_config('mmpretrain::resnet/resnet18_8xb32_in1k.py'
                         ).model.backbone.depth)
print('no pkg_resources:', sys.modules['pkg_resources'] is None)
'''


def test_mmpretrain_configs_without_pkg_resources():
    result = subprocess.run(
        [sys.executable, '-c', textwrap.dedent(SCRIPT)], cwd=REPO,
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split('\n') == [
        'before: import of pkg_resources halted; None in sys.modules',
        'after: ResNet 18 6',
        'patched: vlltr_mm.utils.package_lookup '
        'vlltr_mm.utils.package_lookup',
        'hub: 18',
        'no pkg_resources: True', '']
