from .class_prior import ClassPrior, check_class_counts  # noqa: F401
