# iNaturalist 2018 (paper §4.1): 8,142 species, 437.5K naturally
# long-tailed training images; the official val set (3 per class) serves as
# the test set, as in the paper. Layout (official archives):
#   data/inat2018/train_val2018/<kingdom>/<id>/*.jpg
#   data/inat2018/{train2018,val2018}.json
#   data/inat2018/categories.json   (real class names, released June 2018)
# The annotation files' own category names are obfuscated, so class names
# come from categories.json. Move the data elsewhere with one key (our
# tools rebase every path under it): --cfg-options data_root=/datasets/x
custom_imports = dict(imports=['vlltr_mm'], allow_failed_imports=False)

dataset_type = 'INaturalist2018'
data_root = 'data/inat2018'
num_classes = 8142
# Per-GPU batch size; the stage configs override it (CVLP 256, LGR 128).
batch_size = 128
# Relative to data_root; None takes the names inside the annotation file.
classes = 'categories.json'

# CLIP's normalisation (RGB, 0-255 scale).
data_preprocessor = dict(
    num_classes=num_classes,
    mean=[0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255],
    std=[0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255],
    to_rgb=True,
)
# Images are loaded as BGR; the fill values below act before to_rgb.
bgr_mean = data_preprocessor['mean'][::-1]
bgr_std = data_preprocessor['std'][::-1]

# DeiT-style augmentation, as the paper uses (§4.3).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(
            pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=256,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    # The authors drop the last incomplete batch (drop_last=True).
    drop_last=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='train2018.json',
        classes=classes,
        num_classes=num_classes,
        pipeline=train_pipeline),
    # Square-root sampling (§4.3): draws with replacement, seeded per epoch.
    sampler=dict(type='SquareRootSampler'),
)

val_dataloader = dict(
    batch_size=batch_size,
    num_workers=8,
    persistent_workers=True,
    pin_memory=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='val2018.json',
        classes=classes,
        num_classes=num_classes,
        test_mode=True,
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
# Many / medium / few splits use the training counts (paper §4.2).
val_evaluator = dict(
    type='LongTailAccuracy',
    topk=(1, 5),
    num_classes=num_classes,
    train_ann_file=f'{data_root}/train2018.json')

# iNaturalist 2018 has no public test labels: val doubles as test (§4.1).
test_dataloader = val_dataloader
test_evaluator = val_evaluator
