# CPU demo, Table 4 #7: the LGR head with "cut-off" anchors (the first M
# sentences of each class) instead of anchor sentence selection.
custom_imports = dict(
    imports=['vlltr_mm', 'vlltr_mm.demo'], allow_failed_imports=False)
_base_ = ['./lgr_demo_fmnist-lt.py']

custom_hooks = [
    dict(type='ClassPriorHook'),
    dict(
        type='AnchorSentenceSelectionHook',
        corpus={{_base_.corpus}},
        text_encoder=dict(
            type='OpenCLIPTextEncoder', model_name={{_base_.demo_model}},
            trim_padding=True),
        selection='cutoff'),
]
