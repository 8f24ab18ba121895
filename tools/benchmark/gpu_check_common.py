"""What the parts of ``gpu_check.py`` share: sizes, tolerances, helpers.

The sizes: :data:`FULL` is what the paper's recipes run (224 px CLIP
towers, batch up to 256, ImageNet-LT / iNat heads, 200k x 20k AnSS
scoring); :data:`QUICK` runs the same code at toy sizes for CI on a CPU.
The helpers run a forward under autocast on any device, halve a batch on
out-of-memory, probe peak memory and compare results against a reference
(``rel_diff``, ``checked``).

The timers of ``bench_cvlp_step.py`` and ``bench_lgr_head.py`` and the
peak-memory probe of ``bench_common.py`` are imported from those scripts
(:func:`load_script`), not copied.

Not meant to be run directly; see ``gpu_check.py``.
"""
import contextlib
import functools
import gc
import importlib.util
import os.path as osp

import torch
from mmengine.optim import OptimWrapper

HERE = osp.dirname(osp.abspath(__file__))
MIB = 2**20
DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
# Unit roundoff of each autocast dtype (8 and 11 significant bits).
ROUNDOFF = {'bf16': 2.0**-8, 'fp16': 2.0**-11}
# A rounded logit of size up to s = 1/tau = 100 is off by up to s*u, and
# a softmax turns that into a relative change of about s*u of the
# probabilities, hence of the gradient: normwise tolerance s*u.
LOGIT_SCALE = 100.0

# LGR sizes: ImageNet-LT with RN50 (D=1024); iNat with ViT-B/16 (D=512)
# and with RN50 (D=1024), the largest, last so that it is what a short
# budget drops.
FULL = dict(
    archs=('RN50', 'ViT-B-16'), max_batch=256, warmup=2, steps=5,
    runner_iters=30, runner_warmup=5,
    # (name, classes C, anchors M, dim D, batch B)
    lgr=(('imagenet-lt', 1000, 64, 1024, 128),
         ('inat2018-vit', 8142, 64, 512, 128),
         ('inat2018-r50', 8142, 64, 1024, 128)),
    lgr_chunk=1024, anss=(200_000, 20_000, 1024, 1000), anss_chunk=4096,
    loss_batch=256, loss_dim=1024, step_batch=16)
QUICK = dict(
    archs=('vlltr-tiny-rn', 'vlltr-tiny-vit'), max_batch=4, warmup=1,
    steps=2, runner_iters=3, runner_warmup=1,
    lgr=(('tiny', 20, 8, 32, 4), ), lgr_chunk=8, anss=(300, 40, 32, 20),
    anss_chunk=64, loss_batch=16, loss_dim=32, step_batch=4)


@functools.lru_cache(maxsize=None)
def load_script(name, folder=HERE):
    """Import ``<folder>/<name>.py`` (a script, not a package); the folder
    defaults to ``tools/benchmark``."""
    spec = importlib.util.spec_from_file_location(
        name, osp.join(folder, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class AutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` that runs forward under ``torch.autocast``.

    MMEngine's ``AmpOptimWrapper`` refuses to run without a GPU, so the
    quick CPU run could not take the same path; this one autocasts on any
    device and, for float16, scales the loss with ``torch.amp.GradScaler``.

    Args:
        optimizer (Optimizer): The optimizer to step.
        device (str): Autocast device type, ``'cpu'`` or ``'cuda'``.
        dtype (str): ``'bf16'`` or ``'fp16'``.
    """

    def __init__(self, optimizer, device, dtype):
        super().__init__(optimizer)
        self.device_type = device.split(':')[0]
        self.dtype = DTYPES[dtype]
        self.scaler = (torch.amp.GradScaler(self.device_type)
                       if dtype == 'fp16' else None)

    @contextlib.contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast(
                self.device_type, self.dtype):
            yield

    def backward(self, loss, **kwargs):
        if self.scaler is not None:
            loss = self.scaler.scale(loss)
        super().backward(loss, **kwargs)

    def step(self, **kwargs):
        if self.scaler is None:
            return super().step(**kwargs)
        self.scaler.step(self.optimizer, **kwargs)
        self.scaler.update()


def is_oom(error):
    """Whether ``error`` is an allocator's out-of-memory failure.

    Args:
        error (Exception): The exception raised.

    Returns:
        bool: True for CUDA and CPU allocation failures.
    """
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and 'out of memory' in str(error))


def free_memory():
    """Collect garbage and return cached CUDA blocks to the driver."""
    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def fit_batch(run, start):
    """Call ``run(batch)`` from ``start``, halving the batch on OOM.

    Args:
        run (callable): Takes the batch size, returns the figures.
        start (int): First batch size tried.

    Returns:
        tuple: The batch that fitted and what ``run`` returned for it.
    """
    batch = start
    while True:
        try:
            return batch, run(batch)
        except Exception as error:
            if not is_oom(error) or batch == 1:
                raise
        # Outside the handler: the traceback holds the failed activations.
        free_memory()
        batch //= 2


def peak_memory(device):
    """The benchmarks' peak-memory probe, as a context manager.

    Args:
        device (str): ``'cuda'``: ``torch.cuda.max_memory_allocated``;
            ``'cpu'``: the peak resident set (``VmHWM``).

    Returns:
        PeakMemory: After the ``with`` block, ``base + peak`` is the
        absolute peak in bytes.
    """
    return load_script('bench_common').PeakMemory(device)


def probe_device(ctx):
    """Device name and memory.

    Read in a child so that the parent never initialises CUDA (a forked
    child could not use it afterwards).

    Args:
        ctx (PartContext): Its ``device`` is probed.

    Returns:
        dict: ``name`` and ``memory_gib`` (CUDA) or ``threads`` (CPU).
    """
    if ctx.device.startswith('cuda'):
        if not torch.cuda.is_available():
            raise RuntimeError('--device cuda but no CUDA device is visible')
        props = torch.cuda.get_device_properties(0)
        return dict(name=props.name, memory_gib=props.total_memory / 2**30)
    import platform
    return dict(name=platform.processor() or platform.machine(),
                threads=torch.get_num_threads())


def rel_diff(value, ref):
    """Max abs difference and that over ``max |ref|`` (normwise).

    Args:
        value (Tensor): Any shape.
        ref (Tensor): The reference, same shape.

    Returns:
        tuple[float, float]: Absolute and relative difference.
    """
    diff = float((value.float() - ref.float()).abs().max())
    return diff, diff / max(float(ref.float().abs().max()), 1e-30)


def checked(ctx, row, fn):
    """Emit check ``row`` updated with ``fn()``; an exception fails it.

    Args:
        ctx (PartContext): Where the row goes.
        row (dict): ``check`` name, ``tol`` and context columns.
        fn (callable): Returns the figures, ``value`` and ``ok`` included.
    """
    try:
        row.update(fn())
    except Exception as error:
        row.update(ok=False, error=f'{type(error).__name__}: {error}')
    ctx.emit('checks', row)
