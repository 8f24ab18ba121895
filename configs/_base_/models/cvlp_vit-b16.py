# CVLP model (VL-LTR stage 1) around CLIP ViT-B/16 (D = 512).
_base_ = ['./cvlp_r50.py']

clip_model = 'ViT-B-16'
clip_weights = 'openai'

model = dict(
    backbone=dict(
        model_name=clip_model, pretrained=clip_weights, norm_eval=False),
    text_encoder=dict(model_name=clip_model, pretrained=clip_weights))
