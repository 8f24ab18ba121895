from .lgr_head import LGRHead  # noqa: F401
from .logit_adjusted_linear_head import LogitAdjustedLinearClsHead  # noqa: F401,E501
