"""How every tool of ours reads a config and its ``--cfg-options``, and
how the ones that run a model start and stop it.

One sequence for ``tools/train.py``, ``tools/test.py`` and the analysis,
data and conversion tools, so that a user's options mean the same thing
everywhere: the file is loaded, the options are checked against it
(:mod:`.config_checks`: typos, values of the wrong type), the root keys
move every path under them (:mod:`.config_roots`), and the remaining
options are merged as MMEngine merges them. :func:`run_runner` is the one
Runner lifecycle of the tools under ``torch.distributed``.
"""
import argparse
import os
from typing import Any, Callable, Optional, Sequence, Tuple

from mmengine.config import Config

from .config_checks import ConfigOptionsAction, check_config
from .config_roots import ROOT_KEYS, apply_root_options

__all__ = [
    'ConfigOptionsAction', 'add_cfg_options', 'add_launcher_args',
    'load_config', 'parse_tool_args', 'run_runner'
]


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


def add_launcher_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--launcher`` and ``--local_rank`` (what MMEngine's launchers
    and ``torch.distributed.launch`` pass)."""
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_tool_args(parser: argparse.ArgumentParser,
                    argv: Optional[Sequence[str]] = None
                    ) -> argparse.Namespace:
    """``parser.parse_args(argv)``, with ``LOCAL_RANK`` set from
    ``--local_rank`` unless a launcher set it (MMEngine reads the
    variable)."""
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def run_runner(cfg: Config, what: str,
               body: Callable[[Any], Any]) -> Tuple[Any, bool]:
    """Build the Runner of ``cfg``, run ``body(runner)``, take it down.

    The process group is set up for ``cfg.launcher`` (gloo without CUDA);
    an error on one rank ends every rank at once
    (:func:`~vlltr_mm.utils.rank_failure.exit_all_ranks_on_error`: no
    barrier that the others, blocked in a collective, would never reach);
    the runner, whose DDP wrapper holds the process group and its gloo
    work, is released before the group is torn down
    (:func:`~vlltr_mm.utils.distributed.close_distributed`).

    Args:
        cfg (Config): The config, ``launcher`` set.
        what (str): What the run does, for the failing rank's message,
            e.g. ``'training'``.
        body (callable): Called with the runner; e.g. ``runner.test()``.

    Returns:
        tuple: ``body``'s result and whether this is the main process.
    """
    # Imported here: `import vlltr_mm` does not need the Runner.
    from mmengine.dist import is_main_process
    from mmengine.runner import Runner

    from .distributed import close_distributed, setup_cpu_distributed
    from .rank_failure import exit_all_ranks_on_error
    setup_cpu_distributed(cfg, cfg.launcher)
    with exit_all_ranks_on_error(what):
        runner = Runner.from_cfg(cfg)
        result = body(runner)
        main = is_main_process()
    del runner
    close_distributed()
    return result, main
