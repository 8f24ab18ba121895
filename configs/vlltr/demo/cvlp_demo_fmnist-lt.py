# CPU demo, stage 1 (CVLP) on Fashion-MNIST-LT with a CLIP-like model built
# from encoders that ship in pip packages (tools/demo/prepare_demo.py):
# EfficientNet-Lite0 (ImageNet) image tower + MiniLM text tower, both
# projected to D = 256. Run by tools/demo/run_demo.py (`make demo`).
custom_imports = dict(
    imports=['vlltr_mm', 'vlltr_mm.demo'], allow_failed_imports=False)
_base_ = [
    '../../_base_/datasets/fashion-mnist-lt.py',
    '../../_base_/datasets/fashion-mnist-lt_text.py',
    '../../_base_/default_runtime.py',
]

demo_model = {{_base_.demo_model}}
# Built by tools/demo/prepare_demo.py.
demo_weights = 'data/demo/demo_clip.pth'
corpus = {{_base_.corpus}}

data_preprocessor = dict(type='ClassTextDataPreprocessor')

model = dict(
    type='CVLP',
    backbone=dict(
        type='OpenCLIPVisual', model_name=demo_model,
        pretrained=demo_weights,
        # NHWC images: faster depthwise convolutions on CPU.
        channels_last=True),
    # Only the top MiniLM layer (and the projection) trains: the CPU budget.
    text_encoder=dict(
        type='OpenCLIPTextEncoder',
        model_name=demo_model,
        pretrained=demo_weights,
        frozen_stages=5,
        # Sentences average about 10 of 32 tokens: skip the shared padding.
        trim_padding=True),
    corpus=corpus,
    ccl_loss=dict(type='ClassWiseContrastiveLoss', label_smoothing=0.1),
    # The two towers start unaligned (separately pre-trained, random
    # projections), so distilling from the initial model is meaningless:
    # λ = 1 and no teacher.
    distill_loss=None,
    loss_lambda=1.0,
    logit_scale_init=None,
    logit_scale_max=100.0,
    prototype_sentences='prompts')

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='ClassTextDataset',
        dataset={{_base_.train_dataloader.dataset}},
        corpus=corpus))

max_epochs = 10
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=3e-4, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={'logit_scale': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=0.01,
        by_epoch=True,
        begin=0,
        end=1,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - 1,
        eta_min=1e-6,
        by_epoch=True,
        begin=1,
        end=max_epochs),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=100)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=100, max_keep_ckpts=1, save_last=True,
                    save_best=None))
