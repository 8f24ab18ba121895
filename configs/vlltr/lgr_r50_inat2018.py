# VL-LTR stage 2 (AnSS + LGR head), CLIP ResNet-50, iNaturalist 2018
# (paper §4.5).
#
#   tools/dist_train.sh configs/vlltr/lgr_r50_inat2018.py 8
#   tools/test.py configs/vlltr/lgr_r50_inat2018.py \
#       work_dirs/lgr_r50_inat2018/epoch_N.pth
#
# Starts from the CVLP checkpoint (load_from). Before the first epoch,
# AnchorSentenceSelectionHook scores every corpus sentence with the stage-1
# encoders and loads the M best per class into the head; the anchors are
# saved in every checkpoint, so testing needs no hook.
custom_imports = dict(imports=['vlltr_mm'], allow_failed_imports=False)
_base_ = [
    '../_base_/datasets/inat2018.py',
    '../_base_/datasets/inat2018_text.py',
    '../_base_/models/lgr_r50.py',
    '../_base_/schedules/lgr_adamw_50e.py',
    '../_base_/default_runtime.py',
]

load_from = 'work_dirs/cvlp_r50_inat2018/epoch_100.pth'
# The CVLP checkpoint initialises the image tower only: the LGR head is new
# and the text tower / logit_scale are not part of this model. Any other
# difference is an error (CheckpointCheckHook).
default_hooks = dict(
    checkpoint_check=dict(
        allow_missing=['head.'],
        allow_unexpected=['text_encoder.', 'logit_scale']))


custom_hooks = [
    dict(
        type='AnchorSentenceSelectionHook',
        corpus={{_base_.corpus}},
        # The text tower of the backbone's CLIP model, with weights from the
        # stage-1 checkpoint (None: load_from).
        checkpoint=None,
        # Pool: the first 50 training images of each class (authors).
        pool=dict(split='train', max_per_class=50, mode='first'),
        # 'cutoff' keeps the first M sentences instead (Table 4 #7).
        selection='anss',
        batch_size=256,
        num_workers=8),
]

batch_size = 128
train_dataloader = dict(batch_size=batch_size)
val_dataloader = dict(batch_size=batch_size)
test_dataloader = dict(batch_size=batch_size)

# iNat: the image tower is fine-tuned too (BatchNorm statistics frozen), at
# lr 2e-5 for 360 epochs; the head's attention keeps lr 1e-6.
model = dict(
    backbone=dict(frozen=False, norm_eval=True),
    # Chunk the head over classes: about half the peak memory (8142 classes).
    head=dict(num_classes=8142, alpha=0.7, class_chunk=1024))
max_epochs = 360
warmup_epochs = 5
optim_wrapper = dict(
    optimizer=dict(lr=2e-5),
    paramwise_cfg=dict(
        custom_keys={
            'head.attn_norm': dict(lr_mult=0.05, decay_mult=0.0),
            'head.attn_proj': dict(lr_mult=0.05),
            'head.log_scale': dict(decay_mult=0.0),
        }))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-3,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=max_epochs - warmup_epochs,
        eta_min=1e-7,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=20)
