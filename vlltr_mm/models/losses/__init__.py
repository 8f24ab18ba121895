from .class_wise_contrastive_loss import ClassWiseContrastiveLoss  # noqa: F401
from .clip_distillation_loss import CLIPDistillationLoss  # noqa: F401
from .logit_adjusted_loss import (  # noqa: F401
    BalancedSoftmaxLoss,
    LogitAdjustedLoss,
)
