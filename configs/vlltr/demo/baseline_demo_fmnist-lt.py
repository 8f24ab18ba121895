# CPU demo, Table 1 "Baseline": vision only. The same pre-trained image
# tower (before CVLP) fine-tuned end to end with a linear head and
# cross-entropy, same data, sampling and pipeline; trained for as many
# epochs as CVLP + LGR together (the paper trains its baseline for the sum
# of both stages). The head predicts like LinearClsHead (posthoc_tau = 0);
# baseline-la_demo_fmnist-lt.py switches on post-hoc logit adjustment.
custom_imports = dict(
    imports=['vlltr_mm', 'vlltr_mm.demo'], allow_failed_imports=False)
_base_ = [
    '../../_base_/datasets/fashion-mnist-lt.py',
    '../../_base_/datasets/fashion-mnist-lt_text.py',
    '../../_base_/default_runtime.py',
]

demo_model = {{_base_.demo_model}}
num_classes = {{_base_.num_classes}}

model = dict(
    type='VLLTRImageClassifier',
    backbone=dict(
        type='OpenCLIPVisual',
        model_name=demo_model,
        pretrained='data/demo/demo_clip.pth',
        # NHWC images: faster depthwise convolutions on CPU (1.45x).
        channels_last=True),
    head=dict(
        type='LogitAdjustedLinearClsHead',
        num_classes=num_classes,
        in_channels=256,
        posthoc_tau=0.0,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, )))

# Puts the training class counts into the head (and so the checkpoint).
custom_hooks = [dict(type='ClassPriorHook')]

max_epochs = 18
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=3e-4, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0))
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
