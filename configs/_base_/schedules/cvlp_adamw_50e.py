# CVLP schedule as the authors' released recipe sets it
# (ChangyaoTian/VL-LTR: configs/imagelt/pretrain/pretrain_r50.py, main.py
# defaults, optim_factory.py; see docs/fidelity.md): AdamW (betas
# 0.9 / 0.999, eps 1e-8, wd 0.05), a per-epoch cosine over all epochs with
# a 5-epoch linear warm-up from 1e-6 that replaces it, stepped after each
# epoch (DeiTCosineLR), no gradient clipping, AMP (pass --amp).
max_epochs = 50
base_lr = 5e-5
# main.py defaults (the pre-training configs do not override them).
warmup_epochs = 5
warmup_lr = 1e-6
# min_lr=0. in the ImageNet-LT / Places-LT pre-training configs.
min_lr = 0.0

optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', lr=base_lr, weight_decay=0.05, betas=(0.9, 0.999),
        eps=1e-8),
    # The authors' rule (optim_factory.add_weight_decay): no weight decay
    # iff a parameter is 1-D or its name ends in '.bias'. So the 0-dim
    # logit_scale IS decayed, and class_embedding / in_proj_bias are not.
    paramwise_cfg=dict(flat_decay_mult=0.0, bias_decay_mult=0.0),
)

param_scheduler = dict(
    type='DeiTCosineLR',
    T_max=max_epochs,
    warmup_epochs=warmup_epochs,
    warmup_lr=warmup_lr,
    eta_min=min_lr,
    by_epoch=True)

train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=5)
val_cfg = dict()
test_cfg = dict()

# The authors train on 8 GPUs x 256 images (ResNet-50); --auto-scale-lr
# scales lr linearly for another global batch.
auto_scale_lr = dict(base_batch_size=2048)
