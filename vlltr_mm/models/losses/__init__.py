from .class_wise_contrastive_loss import ClassWiseContrastiveLoss  # noqa: F401
from .clip_distillation_loss import CLIPDistillationLoss  # noqa: F401
