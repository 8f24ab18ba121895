# VL-LTR stage 1 (CVLP), CLIP ResNet-50, iNaturalist 2018 (paper §4.5).
#
#   tools/dist_train.sh configs/vlltr/cvlp_r50_inat2018.py 8 --amp
#
# The authors' recipe, released as
# configs/inat/pretrain/inat_pretrain_r50.py (every value
# and its source: docs/fidelity.md): 8 GPUs x 256 images (global batch
# 2048), AMP.
# Data and class text elsewhere:
#   --cfg-options data_root=/datasets/x text_root=/datasets/text/x
# Local CLIP weights instead of the 'openai' download:
#   --cfg-options model.backbone.pretrained=data/clip/RN50.pt \
#                 model.text_encoder.pretrained=data/clip/RN50.pt
custom_imports = dict(imports=['vlltr_mm'], allow_failed_imports=False)
_base_ = [
    '../_base_/datasets/inat2018.py',
    '../_base_/datasets/inat2018_text.py',
    '../_base_/models/cvlp_r50.py',
    '../_base_/schedules/cvlp_adamw_50e.py',
    '../_base_/default_runtime.py',
]

# Delivers each image's sentence tokens to the model as `texts` [B, L].
data_preprocessor = dict(type='ClassTextDataPreprocessor')

corpus = {{_base_.corpus}}
# BatchNorm trains on iNat: the iNat pre-training config keeps main.py's
# train_mode=True (the ImageNet-LT / Places-LT ones set it to False).
model = dict(corpus=corpus, backbone=dict(norm_eval=False))

batch_size = 256
train_dataloader = dict(
    batch_size=batch_size,
    dataset=dict(
        _delete_=True,
        type='ClassTextDataset',
        dataset={{_base_.train_dataloader.dataset}},
        corpus=corpus))
val_dataloader = dict(batch_size=batch_size)
test_dataloader = dict(batch_size=batch_size)

# The long iNat schedule (inat_pretrain_r50.py): lr 5e-4 for 100 epochs;
# the config sets no min_lr or warm-up, so main.py's defaults hold:
# min_lr 1e-5, 5 warm-up epochs from 1e-6.
max_epochs = 100
base_lr = 5e-4
min_lr = 1e-5
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = dict(T_max=max_epochs, eta_min=min_lr)
train_cfg = dict(max_epochs=max_epochs, val_interval=10)
