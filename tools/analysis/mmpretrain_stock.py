"""Find and load one of the tools that MMPretrain's package ships.

``pip install mmpretrain`` puts the repository's ``tools/`` folder under
``mmpretrain/.mim/tools`` (what ``mim run mmpretrain <tool>`` runs). The
thin wrappers next to this file load a stock tool as a module, adjust one
thing it cannot get from our configs, and call its own ``main``.
"""
import importlib.util
import os.path as osp
import sys
from types import ModuleType
from typing import List, Optional

import mmpretrain

STOCK_TOOLS = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools')


def load_stock_tool(rel_path: str) -> ModuleType:
    """Import ``STOCK_TOOLS/rel_path`` without running its ``main``.

    Args:
        rel_path (str): Path under MMPretrain's ``tools/``, e.g.
            ``'visualization/vis_cam.py'``.

    Returns:
        ModuleType: The tool as a module (named ``mmpretrain_stock_<name>``
        so that it never shadows a wrapper of the same file name).

    Raises:
        FileNotFoundError: If this MMPretrain install ships no such tool.
    """
    path = osp.join(STOCK_TOOLS, rel_path)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'MMPretrain {mmpretrain.__version__} ships no {rel_path} under '
            f'{STOCK_TOOLS}; reinstall mmpretrain from PyPI (its wheel '
            'includes the tools) or pass the tool from a clone of '
            'open-mmlab/mmpretrain.')
    name = 'mmpretrain_stock_' + osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    # Registered, as an import would be, so that its classes pickle (e.g.
    # for the tools' worker processes).
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_stock_main(tool: ModuleType, argv: Optional[List[str]]) -> None:
    """Call ``tool.main()`` with ``argv`` as its command line.

    The stock tools parse ``sys.argv``; it is restored afterwards.

    Args:
        tool (ModuleType): A module from :func:`load_stock_tool`.
        argv (list[str], optional): Arguments after the program name.
            Defaults to None (this process's own).
    """
    saved = sys.argv
    sys.argv = [tool.__file__] + (sys.argv[1:] if argv is None else argv)
    try:
        tool.main()
    finally:
        sys.argv = saved
