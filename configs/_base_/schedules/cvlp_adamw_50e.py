# CVLP schedule (paper §4.3, DESIGN §2): AdamW, wd 0.05, cosine decay per
# epoch after a linear warm-up. lr is for the authors' 8 GPUs x 256 images.
max_epochs = 50
warmup_epochs = 5
base_lr = 5e-5

optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', lr=base_lr, weight_decay=0.05, betas=(0.9, 0.999),
        eps=1e-8),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        # The temperature is never weight-decayed.
        custom_keys={'logit_scale': dict(decay_mult=0.0)}),
)

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
        eta_min=1e-6,
        by_epoch=True,
        begin=warmup_epochs,
        end=max_epochs),
]

train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()

# The authors train on 8 GPUs x 256 images per GPU.
auto_scale_lr = dict(base_batch_size=2048)
