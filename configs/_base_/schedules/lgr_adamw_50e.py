# LGR schedule (paper §4.3, DESIGN §2): AdamW, wd 0.05, lr 1e-3 with cosine
# decay; the attention parameters of the head get lr 1e-6.
max_epochs = 50
warmup_epochs = 5
base_lr = 1e-3

optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', lr=base_lr, weight_decay=0.05, betas=(0.9, 0.999),
        eps=1e-8),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        # The attention of the LGR head (W_q, W_k and their LayerNorms)
        # learns at 1e-6 (authors): lr_mult = 1e-6 / base_lr.
        custom_keys={
            'head.attn_norm': dict(lr_mult=1e-3, decay_mult=0.0),
            'head.attn_proj': dict(lr_mult=1e-3),
            'head.log_scale': dict(decay_mult=0.0),
        }),
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

# The authors train on 8 GPUs x 128 images per GPU.
auto_scale_lr = dict(base_batch_size=1024)
