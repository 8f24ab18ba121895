"""A model-index entry for a test config, as ``inference_model`` needs one
(it picks its inferencer from the entry's task, as for MMPretrain's own
models)."""
import contextlib

from mmpretrain.apis.model import ModelHub


@contextlib.contextmanager
def registered_model(tmp_path, weights: str, config: str):
    """Register ``config`` with ``weights`` under a fresh name; yield it."""
    name = f'vlltr-test-{tmp_path.name}'.lower()
    index = tmp_path / 'model-index.yml'
    index.write_text(f'''Models:
  - Name: {name}
    Metadata:
      Training Data: ImageNet-LT
    Results:
      - Task: Image Classification
        Dataset: ImageNet-LT
        Metrics:
          Top 1 Accuracy: 0.0
    Weights: {weights}
    Config: {config}
''')
    ModelHub.register_model_index(str(index))
    try:
        yield name
    finally:
        ModelHub._models_dict.pop(name, None)
