from . import (backbones, classifiers, data_preprocessors, heads,  # noqa: F401
               losses, necks, utils)
