"""MMPretrain's ImageClassifier that refuses checkpoints that do not fit."""
from mmpretrain.models import ImageClassifier
from mmpretrain.registry import MODELS

from .strict_load import StrictLoadMixin


@MODELS.register_module()
class VLLTRImageClassifier(StrictLoadMixin, ImageClassifier):
    """``ImageClassifier`` whose weights must fit when loaded by hand.

    The model of the LGR stage (backbone + ``LGRHead``), the FC and the
    baseline configs. It differs from MMPretrain's ``ImageClassifier`` only
    in :class:`StrictLoadMixin`: ``get_model(cfg, pretrained=ckpt)``,
    ``ImageClassificationInferencer`` and ``inference_model`` raise an
    error listing the missing / unexpected / mis-shaped keys instead of
    predicting with a random head or zero anchors. The state dict keys are
    those of ``ImageClassifier``, so checkpoints saved with
    ``type='ImageClassifier'`` load unchanged.

    Args:
        *args: :class:`mmpretrain.models.ImageClassifier` arguments
            (``backbone``, ``neck``, ``head``, ``train_cfg``,
            ``data_preprocessor``, ...).
        **kwargs: The same, by keyword.
    """
