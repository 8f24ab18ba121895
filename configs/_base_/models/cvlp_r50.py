# CVLP model (VL-LTR stage 1) around CLIP ResNet-50 (D = 1024).
# Top-level configs set `corpus` (the class text) and merge it in here.
clip_model = 'RN50'
# An open_clip pretrained tag (downloaded once) or a local file
# (OpenAI TorchScript .pt or a state dict).
clip_weights = 'openai'

model = dict(
    type='CVLP',
    backbone=dict(
        type='OpenCLIPVisual',
        model_name=clip_model,
        pretrained=clip_weights,
        # The authors keep BatchNorm in eval mode for ImageNet-LT and
        # Places-LT; the iNat config switches it off.
        norm_eval=True),
    text_encoder=dict(
        type='OpenCLIPTextEncoder',
        model_name=clip_model,
        pretrained=clip_weights),
    # Set by the top-level config: the ClassTextCorpus of the dataset.
    corpus=dict(type='ClassTextCorpus'),
    # Eq. 2, label-smoothed by 0.1 as the authors do.
    ccl_loss=dict(type='ClassWiseContrastiveLoss', label_smoothing=0.1),
    # Eq. 3 against a frozen copy of the initial CLIP.
    distill_loss=dict(type='CLIPDistillationLoss'),
    # Eq. 8: L_pre = λ·L_ccl + (1 − λ)·L_dis, λ = 0.5.
    loss_lambda=0.5,
    # Teacher image tower in fp16 on GPU; its sentence embeddings are
    # computed once per corpus and cached here.
    teacher=dict(half=True, cache_dir='data/cache/teacher_text'),
    # 1/τ starts from CLIP's own value and is left unclamped (authors).
    logit_scale_init=None,
    logit_scale_max=None,
    # Zero-shot validation uses the mean prompt embedding per class.
    prototype_sentences='prompts')
