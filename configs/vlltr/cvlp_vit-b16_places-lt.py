# VL-LTR stage 1 (CVLP), CLIP ViT-B/16, Places-LT
# (paper §4.4: the ImageNet-LT recipe).
#
#   tools/dist_train.sh configs/vlltr/cvlp_vit-b16_places-lt.py 8
#
# 8 GPUs x 256 images, 50 epochs, AdamW lr 5e-5 (the authors' setting).
# Local CLIP weights instead of the 'openai' download:
#   --cfg-options model.backbone.pretrained=data/clip/ViT-B-16.pt \
#                 model.text_encoder.pretrained=data/clip/ViT-B-16.pt
# Class text: configs/_base_/datasets/places-lt_text.py.
custom_imports = dict(imports=['vlltr_mm'], allow_failed_imports=False)
_base_ = [
    '../_base_/datasets/places-lt.py',
    '../_base_/datasets/places-lt_text.py',
    '../_base_/models/cvlp_vit-b16.py',
    '../_base_/schedules/cvlp_adamw_50e.py',
    '../_base_/default_runtime.py',
]


# Delivers each image's sentence tokens to the model as `texts` [B, L].
data_preprocessor = dict(type='ClassTextDataPreprocessor')

corpus = {{_base_.corpus}}
model = dict(corpus=corpus)

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
