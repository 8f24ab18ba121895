# VL-LTR stage 2 around CLIP ViT-B/16 (D = 512).
_base_ = ['./lgr_r50.py']

clip_model = 'ViT-B-16'
embed_dim = 512

model = dict(
    backbone=dict(model_name=clip_model, norm_eval=False),
    head=dict(in_channels=embed_dim))
