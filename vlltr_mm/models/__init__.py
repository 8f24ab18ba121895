from . import (
    backbones,
    classifiers,
    data_preprocessors,
    heads,
    losses,
    necks,
    open_clip_adapter,
    utils,
)

__all__ = [
    'backbones', 'classifiers', 'data_preprocessors', 'heads', 'losses',
    'necks', 'open_clip_adapter', 'utils'
]
