from .class_frequency_sampler import (
    ClassAwareSampler,
    ClassFrequencySampler,
    SquareRootSampler,
    get_dataset_labels,
)

__all__ = [
    'ClassAwareSampler', 'ClassFrequencySampler', 'SquareRootSampler',
    'get_dataset_labels'
]
