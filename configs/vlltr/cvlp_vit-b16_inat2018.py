# VL-LTR stage 1 (CVLP), CLIP ViT-B/16, iNaturalist 2018 (paper §4.5).
#
#   tools/dist_train.sh configs/vlltr/cvlp_vit-b16_inat2018.py 8
#
# 8 GPUs x 256 images, 100 epochs, AdamW lr 5e-4 (the authors' setting).
# Local CLIP weights instead of the 'openai' download:
#   --cfg-options model.backbone.pretrained=data/clip/ViT-B-16.pt \
#                 model.text_encoder.pretrained=data/clip/ViT-B-16.pt
# Class text: configs/_base_/datasets/inat2018_text.py.
custom_imports = dict(imports=['vlltr_mm'], allow_failed_imports=False)
_base_ = [
    '../_base_/datasets/inat2018.py',
    '../_base_/datasets/inat2018_text.py',
    '../_base_/models/cvlp_vit-b16.py',
    '../_base_/schedules/cvlp_adamw_50e.py',
    '../_base_/default_runtime.py',
]


# BatchNorm trains normally on iNat (the authors freeze its statistics only
# for ImageNet-LT and Places-LT).
# Delivers each image's sentence tokens to the model as `texts` [B, L].
data_preprocessor = dict(type='ClassTextDataPreprocessor')

corpus = {{_base_.corpus}}
model = dict(corpus=corpus, backbone=dict(norm_eval=False))

batch_size = 256
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(
        _delete_=True,
        type='ClassTextDataset',
        dataset={{_base_.train_dataloader.dataset}},
        corpus=corpus))
val_dataloader = dict(batch_size=batch_size)
test_dataloader = dict(batch_size=batch_size)

# The long iNat schedule: 100 epochs at lr 5e-4.
max_epochs = 100
warmup_epochs = 5
optim_wrapper = dict(optimizer=dict(lr=5e-4))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        eta_min=1e-6,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
