# LGR (fine-tuning) schedule as the authors' released recipe sets it
# (ChangyaoTian/VL-LTR: configs/imagelt/finetune/finetune_r50.py, main.py,
# optim_factory.py; see docs/fidelity.md): AdamW (betas 0.9 / 0.999,
# eps 1e-8, wd 0.05), per-epoch cosine to 0 without warm-up
# (warmup_epochs=0, min_lr=0), no gradient clipping, AMP (pass --amp).
max_epochs = 50
base_lr = 1e-3
# The head's attention (W_q, W_k and their LayerNorms; everything of the
# authors' model whose name lacks 'visual') learns at text_lr; the MLP and
# a trained image tower at base_lr.
text_lr = 1e-6

optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', lr=base_lr, weight_decay=0.05, betas=(0.9, 0.999),
        eps=1e-8),
    paramwise_cfg=dict(
        # No weight decay iff 1-D or named '*.bias' (optim_factory.py).
        flat_decay_mult=0.0,
        bias_decay_mult=0.0,
        # A custom key bypasses the rules above, so it restates them:
        # LayerNorm weights are 1-D (no decay), W_q / W_k are decayed. Its
        # `lr` is absolute (MMEngine copies a custom key's settings into
        # the group), so a config that changes base_lr keeps text_lr.
        custom_keys={
            'head.attn_norm': dict(lr=text_lr, decay_mult=0.0),
            'head.attn_proj': dict(lr=text_lr),
        }),
)

# The authors' loop steps timm's scheduler after each epoch, so epochs 0
# and 1 both run at base_lr and epoch e >= 1 at the cosine of e - 1:
# exactly CosineAnnealingLR starting at epoch 1.
param_scheduler = dict(
    type='CosineAnnealingLR',
    T_max=max_epochs,
    eta_min=0.0,
    begin=1,
    end=max_epochs,
    by_epoch=True)

train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()

# The authors train on 8 GPUs x 128 images.
auto_scale_lr = dict(base_batch_size=1024)
