# VL-LTR stage 2 (AnSS + LGR head), CLIP ViT-B/16 (D = 512),
# Places-LT (paper §4.4).
#
#   tools/dist_train.sh configs/vlltr/lgr_vit-b16_places-lt.py 8 --amp
#   tools/test.py configs/vlltr/lgr_vit-b16_places-lt.py \
#       work_dirs/lgr_vit-b16_places-lt/epoch_50.pth
#
# The ResNet-50 recipe on the ViT-B/16 CVLP checkpoint with the authors'
# ViT-B/16 values, released as
# configs/placeslt/finetune/places_finetune_vit16.py
# (docs/fidelity.md): 8 GPUs x 128 images, lr 5e-5.
custom_imports = dict(imports=['vlltr_mm'], allow_failed_imports=False)
_base_ = ['./lgr_r50_places-lt.py']

load_from = 'work_dirs/cvlp_vit-b16_places-lt/epoch_50.pth'
model = dict(
    backbone=dict(model_name='ViT-B-16'),
    head=dict(in_channels=512))

# lr 5e-5 (places_finetune_vit16.py); the attention keeps text_lr 1e-6.
base_lr = 5e-5
optim_wrapper = dict(optimizer=dict(lr=base_lr))
