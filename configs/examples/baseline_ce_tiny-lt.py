# A plain cross-entropy baseline on the tiny long-tailed dataset that
# tools/data/make_tiny_lt.py generates (ImageNet-LT list format, classes with
# 150 / 100 / 40 / 20 / 8 / 3 training images), with square-root sampling and
# the many / medium / few metric. Runs on a CPU in about a minute:
#
#   python tools/data/make_tiny_lt.py data/tiny_lt
#   python tools/train.py configs/examples/baseline_ce_tiny-lt.py
#   python tools/test.py configs/examples/baseline_ce_tiny-lt.py \
#       work_dirs/baseline_ce_tiny-lt/epoch_12.pth
custom_imports = dict(imports=['vlltr_mm'], allow_failed_imports=False)
_base_ = ['../_base_/default_runtime.py']

data_root = 'data/tiny_lt'
num_classes = 6

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='ResNet_CIFAR', depth=18, base_channels=16, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=num_classes,
        in_channels=128,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, )))

data_preprocessor = dict(
    num_classes=num_classes,
    mean=[127.5, 127.5, 127.5],
    std=[64.0, 64.0, 64.0],
    to_rgb=True)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    dataset=dict(
        type='LongTailListDataset',
        data_root=data_root,
        ann_file='ImageNet_LT_train.txt',
        classes='labels.txt',
        num_classes=num_classes,
        pipeline=train_pipeline),
    sampler=dict(type='SquareRootSampler'))
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    dataset=dict(
        type='LongTailListDataset',
        data_root=data_root,
        ann_file='ImageNet_LT_val.txt',
        classes='labels.txt',
        num_classes=num_classes,
        test_mode=True,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(
    type='LongTailAccuracy',
    topk=(1, ),
    num_classes=num_classes,
    train_ann_file=f'{data_root}/ImageNet_LT_train.txt')
test_dataloader = dict(
    batch_size=64,
    num_workers=2,
    dataset=dict(
        type='LongTailListDataset',
        data_root=data_root,
        ann_file='ImageNet_LT_test.txt',
        classes='labels.txt',
        num_classes=num_classes,
        test_mode=True,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(type='CosineAnnealingLR', T_max=12, by_epoch=True)
train_cfg = dict(by_epoch=True, max_epochs=12, val_interval=4)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(logger=dict(interval=5))
