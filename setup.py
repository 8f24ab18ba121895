"""Build hook: ship the OpenMMLab resources inside the package.

OpenMMLab tools look for a package's configs, tools and model index under
``<package>/.mim/`` (``mim train|test|search vlltr_mm``, MMPretrain's
``ModelHub``). In the repository they live at the top level, so a wheel
build copies ``configs/``, ``tools/`` and ``model-index.yml`` into
``vlltr_mm/.mim/`` of the build tree (the source tree is not touched).
Editable installs skip the copy: ``vlltr_mm.utils.model_index.mim_root``
then finds the checkout itself. Everything else is in ``pyproject.toml``.
"""
import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))
MIM_RESOURCES = ('configs', 'tools', 'model-index.yml')
SKIP = shutil.ignore_patterns('__pycache__', '*.py[cod]')


class BuildPyWithMimResources(build_py):
    """``build_py`` that also copies :data:`MIM_RESOURCES` into
    ``vlltr_mm/.mim`` of the build tree."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            return
        target = osp.join(self.build_lib, 'vlltr_mm', '.mim')
        for name in MIM_RESOURCES:
            src, dst = osp.join(ROOT, name), osp.join(target, name)
            if not osp.exists(src):
                raise FileNotFoundError(
                    f'{src} is missing: build from a full checkout or '
                    'sdist (MANIFEST.in lists what an sdist keeps)')
            if osp.isdir(src):
                shutil.copytree(src, dst, ignore=SKIP, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)


setup(cmdclass={'build_py': BuildPyWithMimResources})
