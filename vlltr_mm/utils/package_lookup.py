"""MMEngine's package look-ups, without ``pkg_resources`` when it is gone.

MMEngine 0.10 finds another package's configs (``_base_ =
['mmpretrain::resnet/resnet18_8xb32_in1k.py']``, ``with read_base(): from
mmpretrain.configs... import *``) and hub models with three functions of
``mmengine.utils.package_utils`` that import ``pkg_resources``:
``is_installed``, ``get_installed_path`` and ``package2module``
(``install_package`` calls ``is_installed``). setuptools 81 and later no
longer ship ``pkg_resources``, and ordinary installs can leave such a
setuptools behind (``pip install -U setuptools``: 84.x; torch 2.14 itself
asks for ``setuptools>=77.0.3``), after which every ``mmpretrain::`` config
fails with a bare ``ModuleNotFoundError: No module named 'pkg_resources'``.

:func:`patch_mmengine_package_lookups` (run by ``import vlltr_mm``) gives
MMEngine equivalents of exactly these three functions built on the
standard library's :mod:`importlib.metadata`, with the same arguments and
results, when and only when ``pkg_resources`` cannot be found. It rebinds
the names in the MMEngine modules that hold them; it creates no
``pkg_resources`` module, so every other library still sees the
environment as it is. MMEngine parses a config's ``_base_`` before it
imports the config's ``custom_imports``, so the fix acts in processes that
import ``vlltr_mm`` first, as all of our ``tools/`` do; MMPretrain's own
``tools/train.py`` parses first and still needs ``setuptools<81``.
"""
import importlib.metadata
import importlib.util
import os.path as osp
import sys

#: MMEngine functions that import ``pkg_resources``.
PATCHED_NAMES = ('is_installed', 'get_installed_path', 'package2module')


def is_installed(package: str) -> bool:
    """Whether a distribution, else an importable module, has this name.

    Args:
        package (str): Distribution name (``'mmpretrain'``,
            ``'mmcv-lite'``) or top-level module name.

    Returns:
        bool: True if installed (a namespace package does not count).
    """
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        return spec is not None and spec.origin is not None


def package2module(package: str) -> str:
    """First top-level module of an installed distribution.

    Args:
        package (str): Distribution name, e.g. ``'mmcv-lite'``.

    Returns:
        str: Module name from its ``top_level.txt``, e.g. ``'mmcv'``.

    Raises:
        importlib.metadata.PackageNotFoundError: If it is not installed.
        ValueError: If the distribution has no ``top_level.txt``.
    """
    top_level = importlib.metadata.distribution(package).read_text(
        'top_level.txt')
    if not top_level:
        raise ValueError(f'can not infer the module name of {package}')
    return top_level.split('\n')[0]


def get_installed_path(package: str) -> str:
    """Folder of an installed package's top-level module.

    ``<location>/<package>`` if that exists, else
    ``<location>/<package2module(package)>``; a module found only on
    ``sys.path`` (no distribution) gives its own folder.

    Args:
        package (str): Distribution or module name.

    Returns:
        str: The folder, e.g. ``'.../site-packages/mmpretrain'``.

    Raises:
        importlib.metadata.PackageNotFoundError: If neither a distribution
            nor a module has the name.
        RuntimeError: If only a namespace package has it.
    """
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        if spec is None:
            raise
        if spec.origin is None:
            raise RuntimeError(f'{package} is a namespace package, which is '
                               'invalid for `get_install_path`') from None
        return osp.dirname(spec.origin)
    # pkg_resources reports the sys.path entry as an absolute path.
    location = osp.abspath(str(dist.locate_file('')))
    possible_path = osp.join(location, package)
    if osp.exists(possible_path):
        return possible_path
    return osp.join(location, package2module(package))


def patch_mmengine_package_lookups() -> bool:
    """Give MMEngine the functions above if ``pkg_resources`` is missing.

    Every loaded ``mmengine`` module whose attribute is one of MMEngine's
    originals gets ours instead (``mmengine.utils``,
    ``mmengine.utils.package_utils``, ``mmengine.config.config``, and
    ``mmengine.hub.hub`` if loaded; later imports take ours from
    ``mmengine.utils``). Idempotent.

    Returns:
        bool: True if MMEngine now uses the functions above (always when
        ``pkg_resources`` is missing), False if it keeps its own.
    """
    if importlib.util.find_spec('pkg_resources') is not None:
        return False
    from mmengine.utils import package_utils
    ours = {name: globals()[name] for name in PATCHED_NAMES}
    originals = {
        id(getattr(package_utils, name)): ours[name]
        for name in PATCHED_NAMES
    }
    import mmengine.config.config  # noqa: F401 (holds is_installed)
    for name, module in list(sys.modules.items()):
        if module is None or not (name == 'mmengine'
                                  or name.startswith('mmengine.')):
            continue
        for attr in PATCHED_NAMES:
            replacement = originals.get(id(getattr(module, attr, None)))
            if replacement is not None:
                setattr(module, attr, replacement)
    return True
