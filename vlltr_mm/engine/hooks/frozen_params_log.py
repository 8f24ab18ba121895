"""One log line instead of MMEngine's warning per frozen parameter tensor.

With any ``paramwise_cfg``, MMEngine's ``DefaultOptimWrapperConstructor``
warns ``<name> is skipped since its requires_grad=False`` once per frozen
tensor: 148 lines for the frozen CLIP tower of an LGR run. Frozen towers
are intended here, so :class:`FrozenParamsFilter` drops exactly that
message (every other record passes untouched) and remembers the names;
:func:`frozen_params_summary` turns them into one line. A filter on the
runner's logger is used instead of an optimizer-wrapper constructor of our
own because it works with whatever constructor a config chooses (MMEngine's,
MMPretrain's layer-decay one, ...) and needs no config change.
"""
import logging
import re
from collections import Counter
from typing import Iterable, List, Sequence

from torch import nn

_SKIPPED = re.compile(r'^(\S*) is skipped since its requires_grad=False$')


class FrozenParamsFilter(logging.Filter):
    """Drop MMEngine's per-tensor "requires_grad=False" warnings.

    Attributes:
        names (list[str]): Names of the parameters whose warning was
            dropped, in the order MMEngine reported them.
    """

    def __init__(self):
        super().__init__()
        self.names: List[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        match = _SKIPPED.match(record.getMessage())
        if match is None:
            return True
        # Parameters of the root module are reported as '.name'.
        self.names.append(match.group(1).lstrip('.'))
        return False


def covering_prefixes(frozen: Iterable[str],
                      names: Sequence[str]) -> List[str]:
    """The fewest dotted prefixes that hold only frozen parameters.

    Args:
        frozen (Iterable[str]): Names of the frozen parameters.
        names (Sequence[str]): Names of all parameters of the model.

    Returns:
        list[str]: For each frozen parameter, the shortest prefix of its
        name (a module path, or the full name) under which every parameter
        is frozen; each prefix once, in model order.
    """
    frozen = set(frozen)
    total, hit = Counter(), Counter()
    for name in names:
        parts = name.split('.')
        for i in range(1, len(parts) + 1):
            prefix = '.'.join(parts[:i])
            total[prefix] += 1
            hit[prefix] += name in frozen
    found = {}
    for name in names:
        if name not in frozen:
            continue
        parts = name.split('.')
        for i in range(1, len(parts) + 1):
            prefix = '.'.join(parts[:i])
            if hit[prefix] == total[prefix]:
                found.setdefault(prefix, prefix != name)
                break
    return [f'{p}.*' if is_module else p for p, is_module in found.items()]


def frozen_params_summary(frozen: Iterable[str], model: nn.Module,
                          max_prefixes: int = 8) -> str:
    """``'N frozen parameter tensors (M parameters) are not optimised:
    backbone.*'``.

    Args:
        frozen (Iterable[str]): Names of the frozen parameters (repeats,
            e.g. of a shared tensor reported twice, count once).
        model (nn.Module): The model the names belong to.
        max_prefixes (int): Prefixes listed before ``(+K more)``.
            Defaults to 8.

    Returns:
        str: The summary line.
    """
    params = dict(model.named_parameters(remove_duplicate=False))
    frozen = list(dict.fromkeys(frozen))
    numel = sum(params[n].numel() for n in frozen if n in params)
    prefixes = covering_prefixes(frozen, list(params))
    shown = ', '.join(prefixes[:max_prefixes])
    if len(prefixes) > max_prefixes:
        shown += f' (+{len(prefixes) - max_prefixes} more)'
    return (f'{len(frozen)} frozen parameter tensors ({numel:,} parameters) '
            f'are not optimised: {shown}')
