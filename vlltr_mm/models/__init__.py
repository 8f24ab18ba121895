from . import (
    backbones,
    classifiers,
    data_preprocessors,
    heads,
    losses,
    necks,
    utils,
)

__all__ = [
    'backbones', 'classifiers', 'data_preprocessors', 'heads', 'losses',
    'necks', 'utils'
]
