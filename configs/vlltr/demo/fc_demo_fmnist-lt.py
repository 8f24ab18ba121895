# CPU demo, Table 4 #5: a linear (FC) head instead of LGR on the same frozen
# CVLP image tower — vision-only recognition on CVLP features.
custom_imports = dict(
    imports=['vlltr_mm', 'vlltr_mm.demo'], allow_failed_imports=False)
_base_ = ['./lgr_demo_fmnist-lt.py']

model = dict(
    head=dict(
        _delete_=True,
        type='LinearClsHead',
        num_classes={{_base_.num_classes}},
        in_channels=256,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        topk=(1, )))
custom_hooks = [dict(type='ClassPriorHook')]
optim_wrapper = dict(paramwise_cfg=dict(_delete_=True))
