"""The OpenMMLab resources of vlltr_mm: model index, configs and tools.

OpenMMLab packages keep ``model-index.yml``, ``configs/`` and ``tools/``
in the repository root and ship copies of them inside the installed
package under ``<package>/.mim/`` (our ``setup.py`` copies them at build
time). MIM (``mim train|test|search vlltr_mm``) and MMPretrain's
``ModelHub`` read them there. This module finds that folder in both
layouts and registers the model index with MMPretrain, so that
``list_models('*vlltr*')``, ``get_model(name)`` and
``inference_model(name, ...)`` know the VL-LTR configs.
"""
import os.path as osp
from typing import List, Optional

PACKAGE_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODEL_INDEX = 'model-index.yml'

_registered: List[str] = []


def mim_root() -> Optional[str]:
    """The folder holding ``model-index.yml``, ``configs/`` and ``tools/``.

    Returns:
        str | None: ``vlltr_mm/.mim`` in an installed (non-editable)
        package; the repository root in a source checkout or an editable
        install; None when neither has a model index (e.g. a package built
        without its resources).
    """
    installed = osp.join(PACKAGE_DIR, '.mim')
    checkout = osp.dirname(PACKAGE_DIR)
    for root in (installed, checkout):
        if (osp.isfile(osp.join(root, MODEL_INDEX))
                and osp.isdir(osp.join(root, 'configs'))):
            return root
    return None


def register_model_index(root: Optional[str] = None) -> List[str]:
    """Register vlltr_mm's models with MMPretrain's ``ModelHub``.

    Idempotent: a second call returns the names registered by the first.
    Config paths in the metafiles are relative to ``root``, so they
    resolve in an installed package as in a checkout.

    Args:
        root (str, optional): Folder with ``model-index.yml`` and the
            configs it names. Defaults to :func:`mim_root`.

    Returns:
        list[str]: The registered model names (lower case), empty when no
        model index was found.
    """
    if _registered:
        return list(_registered)
    root = mim_root() if root is None else root
    if root is None:
        return []
    from mmpretrain.apis.model import ModelHub
    before = set(ModelHub._models_dict)
    ModelHub.register_model_index(
        osp.join(root, MODEL_INDEX), config_prefix=root)
    _registered.extend(sorted(set(ModelHub._models_dict) - before))
    return list(_registered)
