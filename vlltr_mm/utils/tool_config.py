"""How every tool of ours reads a config and its ``--cfg-options``.

One sequence for ``tools/train.py``, ``tools/test.py`` and the analysis,
data and conversion tools, so that a user's options mean the same thing
everywhere: the file is loaded, the options are checked against it
(:mod:`.config_checks`: typos, values of the wrong type), the root keys
move every path under them (:mod:`.config_roots`), and the remaining
options are merged as MMEngine merges them.
"""
from typing import Optional

from mmengine.config import Config

from .config_checks import ConfigOptionsAction, check_config
from .config_roots import ROOT_KEYS, apply_root_options

__all__ = ['ConfigOptionsAction', 'add_cfg_options', 'load_config']


def add_cfg_options(parser, example: str = 'data_root=/data/imagenet'):
    """Add the ``--cfg-options`` argument every tool takes.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
        example (str): An example shown in the help. Defaults to moving the
            data root.
    """
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=ConfigOptionsAction,
        help='override config settings, `key=value` pairs (values with '
        'spaces are kept; quote them for the shell), e.g. ' + example +
        f'; the top-level {" and ".join(ROOT_KEYS)} move every path under '
        'them')


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Load ``path`` and apply the user's ``--cfg-options``.

    Args:
        path (str): The config file.
        cfg_options (dict, optional): Parsed ``--cfg-options``. Defaults to
            None.

    Returns:
        Config: The config the tool runs with.
    """
    cfg = Config.fromfile(path)
    check_config(cfg, cfg_options, rebased=ROOT_KEYS)
    options = apply_root_options(cfg, cfg_options)
    if options:
        cfg.merge_from_dict(options)
    return cfg
