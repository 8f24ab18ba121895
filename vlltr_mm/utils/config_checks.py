"""Name the config mistakes that MMEngine lets pass silently.

``tools/train.py`` and ``tools/test.py`` call :func:`check_config` on the
config file and its ``--cfg-options`` before merging them:

* a top-level key that nothing reads (see :func:`read_keys`) is fine as
  a helper variable of the file (``data_root``, ``batch_size``) but a
  typo when its name is close to a read key (``load_form``), or an MMCV
  1.x key that MMEngine ignores (``resume_from``);
* a top-level ``--cfg-options`` key that nothing reads changes nothing:
  new, or a helper variable already used while the file was read;
* a dotted ``--cfg-options`` key missing from the file next to a key of a
  close name (``train_cfg.max_epoch``) is a typo;
* a ``--cfg-options`` value that is not a number where the file has one
  (``train_cfg.max_epochs=one``) fails later without the key's name.

The last is always an error; the others warn (:class:`ConfigWarning`),
or fail under ``VLLTR_STRICT_CONFIG=1``. :class:`ConfigOptionsAction` is
MMEngine's ``DictAction`` keeping spaces in string values.
"""
import ast
import difflib
import inspect
import os
import textwrap
import warnings
from functools import lru_cache
from typing import Any, FrozenSet, List, Optional, Sequence, Tuple

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

#: Top-level keys read outside ``Runner``: by MMEngine's ``Config``.
_OTHER_READ = frozenset({'custom_imports'})
#: MMCV 1.x / MMClassification 0.x keys MMEngine ignores, and their heirs.
LEGACY_KEYS = {
    'resume_from': 'resume=True with load_from',
    'evaluation': 'val_cfg and val_evaluator',
    'lr_config': 'param_scheduler',
    'optimizer_config': 'optim_wrapper (e.g. optim_wrapper.clip_grad)',
    'checkpoint_config': 'default_hooks.checkpoint',
    'log_config': 'default_hooks.logger and log_processor',
    'total_epochs': 'train_cfg.max_epochs',
    'workflow': 'train_cfg and val_cfg',
    'dist_params': 'env_cfg.dist_cfg',
}
#: Above this difflib ratio a key is taken for a misspelt read key.
_CLOSE = 0.8
_MISSING = object()


class ConfigWarning(UserWarning):
    """A config key or ``--cfg-options`` value that is probably a mistake."""


@lru_cache(maxsize=None)
def read_keys() -> FrozenSet[str]:
    """Top-level config keys that MMEngine's Runner reads.

    Taken from the source of :class:`~mmengine.runner.Runner` (``cfg[k]``,
    ``cfg.get(k)`` in ``from_cfg`` and ``self.cfg.get(k)`` elsewhere), so
    the set follows the installed MMEngine; plus ``custom_imports``.
    MMPretrain's APIs and vlltr_mm read no other top-level key.

    Returns:
        frozenset[str]: The keys.
    """
    tree = ast.parse(textwrap.dedent(inspect.getsource(Runner)))
    keys = set(_OTHER_READ)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and getattr(
                node.func, 'attr', None) == 'get':
            owner, key = node.func.value, node.args[0]
        elif isinstance(node, ast.Subscript):
            owner, key = node.value, node.slice
        else:
            continue
        if (ast.unparse(owner) in ('cfg', 'self.cfg')
                and isinstance(key, ast.Constant)
                and isinstance(key.value, str)):
            keys.add(key.value)
    return frozenset(keys)


def _close(name: str, choices) -> Optional[str]:
    found = difflib.get_close_matches(name, sorted(map(str, choices)), 1,
                                      _CLOSE)
    return found[0] if found else None


def _lookup(tree: Any, parts: List[str]) -> Tuple[Any, Any, int]:
    """Value at a dotted key, else the deepest container and its depth."""
    node = tree
    for depth, part in enumerate(parts):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif (isinstance(node, (list, tuple)) and part.isdigit()
              and int(part) < len(node)):
            node = node[int(part)]
        else:
            return _MISSING, node, depth
    return node, None, len(parts)


def _leaves(tree: Any, prefix: str = ''):
    """``(dotted key, value)`` of every non-container value."""
    items = (tree.items() if isinstance(tree, dict) else enumerate(tree)
             if isinstance(tree, (list, tuple)) else None)
    if items is None:
        yield prefix, tree
        return
    for key, value in items:
        yield from _leaves(value, f'{prefix}.{key}' if prefix else str(key))


def _uses(cfg: dict, name: str, value: Any) -> List[str]:
    """Keys (other than ``name``) whose value shows the variable's."""
    if isinstance(value, (dict, list, tuple)) or value is None:
        return []
    rest = {k: v for k, v in cfg.items() if k != name}
    return [key for key, leaf in _leaves(rest)
            if (type(leaf) is type(value) and leaf == value) or (
                isinstance(value, str) and len(value) > 2
                and isinstance(leaf, str) and value in leaf)]


def _type_error(key: str, old: Any, new: Any, where: str) -> Optional[str]:
    """Message for a non-number given where the file has a number."""
    if isinstance(old, (bool, int, float)) and isinstance(new, str):
        kind = 'True or False' if isinstance(old, bool) else 'a number'
        return (f'--cfg-options {key}={new}: {where} has {old!r} here and '
                f'expects {kind}, but {new!r} is not; give one, e.g. '
                f'{key}={old!r}')
    return None


def _type_warning(key: str, old: Any, new: Any, where: str) -> Optional[str]:
    if isinstance(old, dict) and not isinstance(new, (dict, type(None))):
        return (f'--cfg-options {key}={new!r} replaces the whole dict that '
                f'{where} has there ({", ".join(map(str, old))}); set '
                f'{key}.<name>=... to change one entry')
    if isinstance(old, str) and isinstance(new, (bool, int, float)):
        return (f'--cfg-options {key}: {where} has the string {old!r} '
                f'here, the option gives {type(new).__name__} {new!r}')
    return None


def _option_problems(tree: dict, key: str, value: Any, where: str,
                     rebased: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Errors and warnings about one ``--cfg-options`` entry."""
    parts = key.split('.')
    old, container, depth = _lookup(tree, parts)
    if old is not _MISSING:
        error = _type_error(key, old, value, where)
        if error:
            return [error], []
        if len(parts) == 1 and key not in read_keys() and (
                key not in rebased):
            uses = _uses(tree, key, old)
            shown = (f' (keys that hold its value {old!r}: '
                     f'{", ".join(uses[:4])})' if uses else '')
            return [], [
                f'--cfg-options {key}: {key!r} is a variable of {where}, '
                'used while the file was read; overriding it afterwards '
                f'changes none of the values computed from it{shown}. '
                'Override those keys instead.'
            ]
        warning = _type_warning(key, old, value, where)
        return [], [warning] if warning else []
    if depth == 0:
        if key in read_keys():
            return [], []
        if parts[0] in LEGACY_KEYS:
            return [], [_legacy(parts[0], '--cfg-options')]
        hint = _close(parts[0], read_keys())
        return [], [
            f'--cfg-options {key}: nothing reads a top-level '
            f'{parts[0]!r} and {where} does not define it'
            + (f'; did you mean {hint!r}?' if hint else
               '; it has no effect.')
        ]
    if isinstance(container, dict):
        hint = _close(parts[depth], container)
        if hint:
            prefix = '.'.join(parts[:depth])
            return [], [
                f'--cfg-options {key}: {where} has no {prefix}.'
                f'{parts[depth]}; did you mean {prefix}.{hint}? (a new key '
                'is passed on as given)'
            ]
    return [], []


def _legacy(key: str, where: str) -> str:
    return (f'{where}: {key!r} is an MMCV 1.x / MMClassification 0.x key '
            f'that MMEngine ignores; use {LEGACY_KEYS[key]}')


def config_problems(cfg: Config,
                    cfg_options: Optional[dict] = None,
                    rebased: Sequence[str] = ()
                    ) -> Tuple[List[str], List[str]]:
    """Errors and warnings about a config file and its overrides.

    Args:
        cfg (Config): The config as read from its file (before
            ``merge_from_dict``).
        cfg_options (dict, optional): ``--cfg-options`` as parsed by
            ``DictAction``. Defaults to None.
        rebased (Sequence[str]): Top-level variables whose override the
            tool applies to the values built from them (e.g.
            ``vlltr_mm.utils.config_roots.ROOT_KEYS`` where it calls
            ``apply_root_options``). Defaults to ().

    Returns:
        tuple[list[str], list[str]]: Error and warning messages.
    """
    where = cfg.filename or 'the config'
    read = read_keys()
    errors, warns = [], []
    for key in cfg.keys():
        if key in read:
            continue
        if key in LEGACY_KEYS:
            warns.append(_legacy(key, where))
            continue
        hint = _close(key, read)
        if hint:
            warns.append(f'{where}: nothing reads the top-level key '
                         f'{key!r}; did you mean {hint!r}? (MMEngine reads '
                         f'{hint!r} and ignores {key!r})')
    tree = cfg.to_dict() if cfg_options else {}
    for key, value in (cfg_options or {}).items():
        more_errors, more_warns = _option_problems(tree, key, value, where,
                                                   rebased)
        errors += more_errors
        warns += more_warns
    return errors, warns


def check_config(cfg: Config,
                 cfg_options: Optional[dict] = None,
                 strict: Optional[bool] = None,
                 rebased: Sequence[str] = ()) -> None:
    """Refuse or warn about config mistakes, before the Runner is built.

    Call it between ``Config.fromfile`` and ``merge_from_dict``.

    Args:
        cfg (Config): The config as read from its file.
        cfg_options (dict, optional): ``--cfg-options`` as parsed.
            Defaults to None.
        strict (bool, optional): Make warnings errors. Defaults to None:
            True when the environment variable ``VLLTR_STRICT_CONFIG`` is
            ``1`` / ``true`` / ``yes``.
        rebased (Sequence[str]): See :func:`config_problems`. Defaults
            to ().

    Raises:
        ValueError: For a ``--cfg-options`` value of the wrong type, or
            any problem when ``strict``; all of them in one message.

    Warns:
        ConfigWarning: One per problem otherwise (on rank 0 only).
    """
    if strict is None:
        strict = os.environ.get('VLLTR_STRICT_CONFIG', '').lower() in (
            '1', 'true', 'yes')
    errors, warns = config_problems(cfg, cfg_options, rebased)
    if strict:
        errors, warns = errors + warns, []
    if os.environ.get('RANK', '0') == '0':
        for message in warns:
            warnings.warn(message, ConfigWarning, stacklevel=2)
    if errors:
        raise ValueError(
            'config problems' + (' (VLLTR_STRICT_CONFIG is set)' if strict
                                 else '') + ':\n  ' + '\n  '.join(errors))


class ConfigOptionsAction(DictAction):
    """MMEngine's ``DictAction``, keeping spaces in string values.

    ``DictAction`` removes every space of a value, quoted or not
    (``data_root='/data/my set'`` becomes ``/data/myset``). Here a value
    in matching quotes is taken as that string verbatim (spaces, commas,
    digits: ``key="'1'"`` is the string ``'1'``); an unquoted value that
    is not a list or tuple keeps its inner spaces and becomes a number,
    bool or None as with ``DictAction``. Lists and tuples (brackets or
    commas) are parsed by ``DictAction`` unchanged.
    """

    @staticmethod
    def _parse_iterable(val: str) -> Any:
        text = val.strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in '\'"':
            return text[1:-1]
        if text.startswith(('(', '[')) or ',' in text:
            return DictAction._parse_iterable(text)
        return DictAction._parse_int_float_bool(text)
