# VL-LTR stage 2: the stage-1 image tower + the language-guided recognition
# head (Eqs. 4–7, 9) around CLIP ResNet-50 (D = 1024). The backbone weights
# come from the CVLP checkpoint (`load_from` in the top-level config); the
# anchors from AnchorSentenceSelectionHook.
clip_model = 'RN50'
embed_dim = 1024

model = dict(
    type='VLLTRImageClassifier',
    backbone=dict(
        type='OpenCLIPVisual',
        model_name=clip_model,
        pretrained=None,
        # ImageNet-LT / Places-LT: the image tower stays frozen (authors).
        frozen=True,
        norm_eval=True),
    head=dict(
        type='LGRHead',
        num_classes=1000,
        in_channels=embed_dim,
        # M anchor sentences per class (paper §4.3).
        num_anchors=64,
        # P^I branch: MLP D -> 4D -> C.
        mlp_ratio=4,
        # 1/τ of P^T: replaced by stage 1's value when the anchors load.
        logit_scale=100.0,
        learnable_scale=False,
        # W_q = W_k = I at initialisation (authors).
        identity_init=True,
        # Authors' inference: α·softmax(P^I) + (1 − α)·softmax(P^T);
        # α = 0.5 is the paper's Eq. 7 up to a factor 2.
        alpha=0.2,
        # Eq. 9 as CE(P^I) + CE(P^T), label-smoothed (authors: 0.1); soft
        # Mixup / CutMix targets are accepted.
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, 5)),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)
