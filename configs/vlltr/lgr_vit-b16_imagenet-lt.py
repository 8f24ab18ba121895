# VL-LTR stage 2 (AnSS + LGR head), CLIP ViT-B/16 (D = 512),
# ImageNet-LT (paper §4.3).
#
#   tools/dist_train.sh configs/vlltr/lgr_vit-b16_imagenet-lt.py 8 --amp
#   tools/test.py configs/vlltr/lgr_vit-b16_imagenet-lt.py \
#       work_dirs/lgr_vit-b16_imagenet-lt/epoch_50.pth
#
# The ResNet-50 recipe on the ViT-B/16 CVLP checkpoint with the authors'
# ViT-B/16 values, released as
# configs/imagelt/finetune/finetune_vit16.py
# (docs/fidelity.md): 8 GPUs x 128 images, lr 1e-3.
custom_imports = dict(imports=['vlltr_mm'], allow_failed_imports=False)
_base_ = ['./lgr_r50_imagenet-lt.py']

load_from = 'work_dirs/cvlp_vit-b16_imagenet-lt/epoch_50.pth'
model = dict(
    backbone=dict(model_name='ViT-B-16'),
    head=dict(in_channels=512))
