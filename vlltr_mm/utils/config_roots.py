"""One key moves a dataset: ``--cfg-options data_root=/x text_root=/y``.

MMEngine resolves a config's variables when the file is loaded, so setting
the top-level ``data_root`` afterwards changes nothing that was built from
it (``train_dataloader.dataset.data_root``, the evaluator's
``train_ann_file``, the corpus paths, ...). Our tools therefore treat these
top-level keys as *roots*: every string value equal to the file's root, or
under it, is rebased onto the new one before the other options are merged.
"""
from typing import Any, Dict, Tuple

from mmengine.config import Config

#: Top-level keys that name a root every data / text path of a shipped
#: config lives under.
ROOT_KEYS = ('data_root', 'text_root')


def _rebase(value: Any, old: str, new: str) -> Tuple[Any, int]:
    """``value`` with every string under ``old`` moved to ``new``, and how
    many strings moved."""
    if isinstance(value, str):
        if value == old:
            return new, 1
        if value.startswith(old + '/'):
            return new + value[len(old):], 1
        return value, 0
    if isinstance(value, dict):
        moved, out = 0, {}
        for key, item in value.items():
            out[key], n = _rebase(item, old, new)
            moved += n
        return type(value)(out) if moved else value, moved
    if isinstance(value, (list, tuple)):
        items, counts = zip(*(_rebase(v, old, new)
                              for v in value)) if value else ((), ())
        moved = sum(counts)
        return (type(value)(items) if moved else value), moved
    return value, 0


def apply_root_options(cfg: Config,
                       options: Dict[str, Any]) -> Dict[str, Any]:
    """Rebase ``cfg`` onto the roots given in ``options``.

    Args:
        cfg (Config): The loaded config; changed in place.
        options (dict): Parsed ``--cfg-options`` (``DictAction`` output).

    Returns:
        dict: ``options`` without the root keys, to merge as usual.

    Raises:
        KeyError: A root key is given for a config that has no such
            top-level variable (its paths cannot be found).
    """
    options = dict(options or {})
    for key in ROOT_KEYS:
        if key not in options:
            continue
        new = str(options.pop(key)).rstrip('/') or '/'
        old = cfg.get(key)
        if not isinstance(old, str) or not old:
            raise KeyError(
                f'--cfg-options {key}=... needs a config with a top-level '
                f'{key} variable that its paths are built from; '
                f'{cfg.filename} has none. Set the paths themselves, e.g. '
                'train_dataloader.dataset.data_root=...')
        old = old.rstrip('/')
        for name in list(cfg.keys()):
            if name == key:
                continue
            value, moved = _rebase(cfg[name], old, new)
            if moved:
                cfg[name] = value
        cfg[key] = new
    return options
