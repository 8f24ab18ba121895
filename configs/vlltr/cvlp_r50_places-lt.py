# VL-LTR stage 1 (CVLP), CLIP ResNet-50, Places-LT (paper §4.4).
#
#   tools/dist_train.sh configs/vlltr/cvlp_r50_places-lt.py 8 --amp
#
# The authors' recipe, released as
# configs/placeslt/pretrain/places_pretrain_r50.py (every value
# and its source: docs/fidelity.md): 8 GPUs x 256 images (global batch
# 2048), AMP.
# Data and class text elsewhere:
#   --cfg-options data_root=/datasets/x text_root=/datasets/text/x
# Local CLIP weights instead of the 'openai' download:
#   --cfg-options model.backbone.pretrained=data/clip/RN50.pt \
#                 model.text_encoder.pretrained=data/clip/RN50.pt
custom_imports = dict(imports=['vlltr_mm'], allow_failed_imports=False)
_base_ = [
    '../_base_/datasets/places-lt.py',
    '../_base_/datasets/places-lt_text.py',
    '../_base_/models/cvlp_r50.py',
    '../_base_/schedules/cvlp_adamw_50e.py',
    '../_base_/default_runtime.py',
]

# Delivers each image's sentence tokens to the model as `texts` [B, L].
data_preprocessor = dict(type='ClassTextDataPreprocessor')

corpus = {{_base_.corpus}}
model = dict(corpus=corpus)

# lr 5e-5 for 50 epochs, min_lr 0 (places_pretrain_r50.py); warm-up 5
# epochs from 1e-6 (main.py defaults): the schedule base.
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
