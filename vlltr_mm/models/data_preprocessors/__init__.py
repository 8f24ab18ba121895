from .class_text_data_preprocessor import ClassTextDataPreprocessor  # noqa: F401
