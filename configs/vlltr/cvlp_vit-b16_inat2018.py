# VL-LTR stage 1 (CVLP), CLIP ViT-B/16 (D = 512), iNaturalist 2018
# (paper §4.5).
#
#   tools/dist_train.sh configs/vlltr/cvlp_vit-b16_inat2018.py 8 --amp
#
# The ResNet-50 recipe with the authors' ViT-B/16 values, released as
# configs/inat/pretrain/inat_pretrain_vit16.py
# (docs/fidelity.md): 8 GPUs x 128 images (global batch 1024), lr 3.5e-4.
# Local weights instead of the 'openai' download:
#   --cfg-options model.backbone.pretrained=data/clip/ViT-B-16.pt \
#                 model.text_encoder.pretrained=data/clip/ViT-B-16.pt
custom_imports = dict(imports=['vlltr_mm'], allow_failed_imports=False)
_base_ = ['./cvlp_r50_inat2018.py']

clip_model = 'ViT-B-16'
clip_weights = 'openai'
model = dict(
    backbone=dict(model_name=clip_model, pretrained=clip_weights),
    text_encoder=dict(model_name=clip_model, pretrained=clip_weights))

base_lr = 3.5e-4
optim_wrapper = dict(optimizer=dict(lr=base_lr))
batch_size = 128
train_dataloader = dict(batch_size=batch_size)
val_dataloader = dict(batch_size=batch_size)
test_dataloader = dict(batch_size=batch_size)
auto_scale_lr = dict(base_batch_size=1024)
