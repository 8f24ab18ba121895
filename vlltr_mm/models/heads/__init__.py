from .lgr_head import LGRHead  # noqa: F401
