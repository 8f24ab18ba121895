# Mixing vlltr_mm into a stock MMPretrain config: inherit MMPretrain's
# ResNet-18 recipe and swap in our long-tailed list dataset, square-root
# sampler and many / medium / few metric. Works with MMPretrain's own tools:
#
#   python tools/data/make_tiny_lt.py data/tiny_lt
#   python $(python -c "import mmpretrain, os; \
#       print(os.path.dirname(mmpretrain.__file__))")/.mim/tools/train.py \
#       configs/examples/resnet18_tiny-lt_from-mmpretrain.py
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']
custom_imports = dict(imports=['vlltr_mm'], allow_failed_imports=False)

data_root = 'data/tiny_lt'
num_classes = 6

model = dict(head=dict(num_classes=num_classes, topk=(1, )))
data_preprocessor = dict(num_classes=num_classes)

# The tiny images are 32x32: keep them small instead of 224 crops.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.6, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='PackInputs'),
]

dataset = dict(
    type='LongTailListDataset',
    data_root=data_root,
    classes='labels.txt',
    num_classes=num_classes)
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        ann_file='ImageNet_LT_train.txt',
        pipeline=train_pipeline,
        **dataset),
    sampler=dict(_delete_=True, type='SquareRootSampler'),
    drop_last=True)
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    dataset=dict(
        _delete_=True,
        ann_file='ImageNet_LT_test.txt',
        test_mode=True,
        pipeline=test_pipeline,
        **dataset))
test_dataloader = val_dataloader
val_evaluator = dict(
    _delete_=True,
    type='LongTailAccuracy',
    num_classes=num_classes,
    train_ann_file=f'{data_root}/ImageNet_LT_train.txt')
test_evaluator = val_evaluator

optim_wrapper = dict(optimizer=dict(lr=0.05))
train_cfg = dict(max_epochs=4, val_interval=2)
param_scheduler = dict(
    _delete_=True, type='CosineAnnealingLR', T_max=4, by_epoch=True)
default_hooks = dict(logger=dict(interval=5))
