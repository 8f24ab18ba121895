from .anss_hook import AnchorSentenceSelectionHook  # noqa: F401
