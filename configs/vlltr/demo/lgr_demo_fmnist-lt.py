# CPU demo, stage 2 (VL-LTR): anchor sentence selection + the LGR head on
# the frozen CVLP image tower, Fashion-MNIST-LT. Run by
# tools/demo/run_demo.py (`make demo`).
custom_imports = dict(
    imports=['vlltr_mm', 'vlltr_mm.demo'], allow_failed_imports=False)
_base_ = [
    '../../_base_/datasets/fashion-mnist-lt.py',
    '../../_base_/datasets/fashion-mnist-lt_text.py',
    '../../_base_/default_runtime.py',
]

demo_model = {{_base_.demo_model}}
num_classes = {{_base_.num_classes}}
load_from = 'work_dirs/demo/cvlp/last.pth'
# M anchors of the ~91 sentences per class (80 prompts + descriptions).
num_anchors = 32

model = dict(
    type='VLLTRImageClassifier',
    backbone=dict(
        type='OpenCLIPVisual', model_name=demo_model, frozen=True,
        channels_last=True),
    head=dict(
        type='LGRHead',
        num_classes=num_classes,
        in_channels=256,
        num_anchors=num_anchors,
        mlp_ratio=4,
        logit_scale=100.0,
        learnable_scale=False,
        identity_init=True,
        # The authors' inference fusion for ImageNet-LT / Places-LT:
        # 0.2·softmax(P^I) + 0.8·softmax(P^T). tools/demo/run_demo.py
        # re-chooses alpha on the val split for its table.
        alpha=0.2,
        # No post-hoc logit adjustment here; lgr-la_demo_fmnist-lt.py.
        posthoc_tau=0.0,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, )))

custom_hooks = [
    # Training class counts into the head, for post-hoc adjustment.
    dict(type='ClassPriorHook'),
    dict(
        type='AnchorSentenceSelectionHook',
        corpus={{_base_.corpus}},
        text_encoder=dict(
            type='OpenCLIPTextEncoder', model_name=demo_model,
            trim_padding=True),
        checkpoint=None,
        # The balanced val split (20 images per class), as the authors do
        # for ImageNet-LT and Places-LT.
        pool=dict(split='val', max_per_class=None, mode='first'),
        selection='anss',
        batch_size=128,
        num_workers=0),
]

max_epochs = 8
optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'head.attn_norm': dict(lr_mult=0.1, decay_mult=0.0),
            'head.attn_proj': dict(lr_mult=0.1),
        }))
param_scheduler = dict(
    type='CosineAnnealingLR', T_max=max_epochs, eta_min=1e-6, by_epoch=True)
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=100)
val_cfg = dict()
test_cfg = dict()
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=100, max_keep_ckpts=1, save_last=True,
                    save_best=None),
    # load_from (the CVLP checkpoint) initialises the image tower only: the
    # head is new, the text tower and logit_scale are not in this model.
    checkpoint_check=dict(
        allow_missing=['head.'],
        allow_unexpected=['text_encoder.', 'logit_scale']))
