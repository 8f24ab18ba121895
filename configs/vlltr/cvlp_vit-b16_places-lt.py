# VL-LTR stage 1 (CVLP), CLIP ViT-B/16 (D = 512), Places-LT (paper §4.4).
#
#   tools/dist_train.sh configs/vlltr/cvlp_vit-b16_places-lt.py 8
#
# The ResNet-50 recipe with the ViT-B/16 CLIP. Local weights instead of the
# 'openai' download:
#   --cfg-options model.backbone.pretrained=data/clip/ViT-B-16.pt \
#                 model.text_encoder.pretrained=data/clip/ViT-B-16.pt
custom_imports = dict(imports=['vlltr_mm'], allow_failed_imports=False)
_base_ = ['./cvlp_r50_places-lt.py']

clip_model = 'ViT-B-16'
clip_weights = 'openai'
model = dict(
    backbone=dict(
        model_name=clip_model, pretrained=clip_weights, norm_eval=False),
    text_encoder=dict(model_name=clip_model, pretrained=clip_weights))
