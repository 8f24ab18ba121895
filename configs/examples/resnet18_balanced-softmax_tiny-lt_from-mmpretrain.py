# Balanced softmax (Ren et al., NeurIPS 2020) in a stock MMPretrain recipe:
# resnet18_tiny-lt_from-mmpretrain.py (MMPretrain's ResNet-18 config with
# our long-tailed list dataset and many / medium / few metric) with the
# loss switched to BalancedSoftmaxLoss (cross-entropy on logits + log n_c).
# No class counts are typed in: ClassPriorHook reads them from the training
# set before the first iteration and hands them to the loss and to
# LongTailAccuracy. The loss keeps them in the checkpoint, so tools/test.py
# needs no training list.
#
#   python tools/data/make_tiny_lt.py data/tiny_lt
#   python tools/train.py \
#       configs/examples/resnet18_balanced-softmax_tiny-lt_from-mmpretrain.py
#   python tools/test.py \
#       configs/examples/resnet18_balanced-softmax_tiny-lt_from-mmpretrain.py \
#       work_dirs/resnet18_balanced-softmax_tiny-lt_from-mmpretrain/epoch_4.pth
_base_ = ['./resnet18_tiny-lt_from-mmpretrain.py']
custom_imports = dict(imports=['vlltr_mm'], allow_failed_imports=False)

num_classes = {{_base_.num_classes}}
model = dict(
    head=dict(
        # The prior comes from ClassPriorHook (and then the checkpoint).
        loss=dict(
            _delete_=True, type='BalancedSoftmaxLoss',
            num_classes=num_classes)))

train_dataloader = dict(
    # Instance-balanced sampling, on purpose: the loss already removes the
    # training prior n_c, and the hook gives it the dataset's counts, not
    # the sampler's. With SquareRootSampler or ClassAwareSampler the
    # batches are already (partly) rebalanced and adding log n_c on top
    # over-corrects towards the tail (the "over-balance" Ren et al. warn
    # of).
    # Square-root sampling instead: batches follow n_c^0.5, so the matching
    # loss is dict(type='LogitAdjustedLoss', tau=0.5).
    sampler=dict(_delete_=True, type='DefaultSampler', shuffle=True))
# Model selection on the val split; the test split stays for the end.
val_dataloader = dict(dataset=dict(ann_file='ImageNet_LT_val.txt'))
# No class_counts / train_ann_file: ClassPriorHook sets them.
val_evaluator = dict(_delete_=True, type='LongTailAccuracy')
test_evaluator = val_evaluator

custom_hooks = [dict(type='ClassPriorHook')]
