# Runtime settings shared by every vlltr_mm config (MMPretrain conventions).
# custom_imports lives in the dataset bases and in every top-level config
# (MMEngine forbids the same key in two bases).
default_scope = 'mmpretrain'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # CheckpointHook with atomic writes; a failed save keeps older files.
    checkpoint=dict(
        type='AtomicCheckpointHook', interval=1, max_keep_ckpts=3,
        save_best='auto'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
    # Refuse checkpoints that do not fit the model or hold NaN/Inf, and
    # never save NaN/Inf weights. A stage that starts from part of another
    # stage's checkpoint lists the allowed key prefixes here (see
    # CheckpointCheckHook, e.g. configs/vlltr/lgr_r50_imagenet-lt.py).
    checkpoint_check=dict(type='CheckpointCheckHook'),
    # Stop at the first NaN/Inf loss instead of finishing a diverged run.
    finite_loss=dict(type='FiniteLossHook'),
    # Random states in every checkpoint, restored by --resume, so that a
    # resumed run repeats the uninterrupted one.
    random_state=dict(type='RandomStateHook'),
    # One readable line each instead of floods: frozen parameters, the LGR
    # head's alpha / tau / anchors, the checkpoint the run started from.
    run_summary=dict(type='RunSummaryHook'),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py and tools/test.py switch to gloo when CUDA is absent.
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)

log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
