# Fashion-MNIST-LT, the CPU demo's data (tools/data/make_fashion_mnist_lt.py):
# 10 real classes, exponential long tail with imbalance factor 100
# (500 -> 5 training images per class), balanced test split (100 per class)
# and val split (20 per class), in the ImageNet-LT list format.
custom_imports = dict(imports=['vlltr_mm'], allow_failed_imports=False)

dataset_type = 'LongTailListDataset'
data_root = 'data/demo/fashion_mnist_lt'
num_classes = 10
batch_size = 32
image_size = 64

# EfficientNet-Lite0 was trained on inputs in [-1, 1].
data_preprocessor = dict(
    num_classes=num_classes,
    mean=[127.0, 127.0, 127.0],
    std=[128.0, 128.0, 128.0],
    to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=image_size,
        crop_ratio_range=(0.7, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='Resize',
        scale=(image_size, image_size),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='PackInputs'),
]


def _split(ann_file, pipeline, test_mode):
    return dict(
        type=dataset_type,
        data_root=data_root,
        ann_file=ann_file,
        classes='labels.txt',
        num_classes=num_classes,
        test_mode=test_mode,
        pipeline=pipeline)


train_dataloader = dict(
    batch_size=batch_size,
    num_workers=2,
    persistent_workers=False,
    dataset=_split('FashionMNIST_LT_train.txt', train_pipeline, False),
    sampler=dict(type='SquareRootSampler'))
val_dataloader = dict(
    batch_size=100,
    num_workers=2,
    persistent_workers=False,
    dataset=_split('FashionMNIST_LT_val.txt', test_pipeline, True),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_dataloader = dict(
    batch_size=100,
    num_workers=2,
    persistent_workers=False,
    dataset=_split('FashionMNIST_LT_test.txt', test_pipeline, True),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(
    type='LongTailAccuracy',
    topk=(1, ),
    num_classes=num_classes,
    train_ann_file=f'{data_root}/FashionMNIST_LT_train.txt')
test_evaluator = val_evaluator
