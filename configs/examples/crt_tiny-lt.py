# Classifier re-training (cRT; Kang et al., "Decoupling Representation and
# Classifier for Long-Tailed Recognition", ICLR 2020), stage 2 on top of the
# plain cross-entropy baseline: keep the stage-1 features, learn a new
# linear classifier from scratch with class-balanced sampling, so the
# classifier does not inherit the long-tailed label prior.
#
#   python tools/data/make_tiny_lt.py data/tiny_lt
#   python tools/train.py configs/examples/baseline_ce_tiny-lt.py  # stage 1
#   python tools/train.py configs/examples/crt_tiny-lt.py          # stage 2
#   python tools/test.py configs/examples/crt_tiny-lt.py \
#       work_dirs/crt_tiny-lt/epoch_4.pth
_base_ = ['./baseline_ce_tiny-lt.py']

stage1_checkpoint = 'work_dirs/baseline_ce_tiny-lt/epoch_12.pth'

model = dict(
    backbone=dict(
        # Stem and all four stages: no gradient, and eval mode in train()
        # (frozen BatchNorm statistics); norm_eval says the same for every
        # norm layer of the backbone.
        frozen_stages=4,
        norm_eval=True,
        # Only the backbone is taken from stage 1 (not `load_from`, which
        # would also restore the stage-1 classifier): the head starts from
        # its own random init_cfg, as cRT re-initialises the classifier.
        init_cfg=dict(
            type='Pretrained', checkpoint=stage1_checkpoint,
            prefix='backbone.')))

# Every class equally likely in a batch (Kang et al.'s class-balanced
# sampling for the classifier stage).
train_dataloader = dict(
    sampler=dict(_delete_=True, type='ClassAwareSampler'))

# A few epochs suffice for a linear classifier on fixed features.
train_cfg = dict(max_epochs=4, val_interval=2)
param_scheduler = dict(
    _delete_=True, type='CosineAnnealingLR', T_max=4, by_epoch=True)
