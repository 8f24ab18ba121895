"""What the benchmark scripts share: the peak-memory probe, the direct
LGR head they measure the efficient one against, and the subprocess
runner of one measurement.

Not meant to be run directly. The scripts of this folder import it by name
(``from bench_common import PeakMemory``): Python puts a script's own
folder first on ``sys.path``.
"""
import json
import os.path as osp
import subprocess
import sys

import torch

MIB = 2**20


def add_device_args(parser) -> None:
    """Add ``--device`` and ``--threads``; see :func:`resolve_device`."""
    parser.add_argument('--device', default=None,
                        help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--threads', type=int, default=None,
                        help="torch CPU threads, 0 for torch's default "
                        '(default 1 on CPU: on a small shared machine '
                        'several threads spin-wait for each other and '
                        'timings scatter several-fold)')


def resolve_device(args) -> None:
    """Fill in the defaults of :func:`add_device_args` in place."""
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.threads is None:
        args.threads = 1 if args.device == 'cpu' else 0


def sync(device: str) -> None:
    """Wait for the device's queued work, so that timers see all of it."""
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def _proc_status(field: str) -> int:
    """A ``/proc/self/status`` size field (``VmRSS``, ``VmHWM``) in bytes."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f'{field} not in /proc/self/status')


class PeakMemory:
    """Peak memory (bytes) above the level at entry, as a context manager.

    On CUDA: ``torch.cuda.max_memory_allocated`` over the allocation at
    entry. On CPU: the rise of the process's peak resident set
    (``VmHWM``, reset to the current ``VmRSS`` through
    ``/proc/self/clear_refs``), so only what the block allocates counts.
    After the ``with`` block, ``peak`` holds the rise and ``base`` the
    level at entry.

    Args:
        device (str): ``'cpu'`` or ``'cuda[:i]'``.
    """

    def __init__(self, device: str):
        self.device = device

    def __enter__(self):
        if self.device.startswith('cuda'):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')  # resets VmHWM to the current VmRSS
            self.base = _proc_status('VmRSS')
        return self

    def __exit__(self, *exc):
        if self.device.startswith('cuda'):
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = _proc_status('VmHWM')
        self.peak = max(0, peak - self.base)


def build_lgr_head(impl: str, *args, **kwargs):
    """An ``LGRHead`` in the efficient (production) or the direct form.

    The direct form computes Eqs. 5-7 literally, forming the keys
    [C, M, D] and the gathered texts [B, C, D]
    (:func:`vlltr_mm.models.heads.lgr_attention.direct_cosine`); it is what
    the benchmarks compare the efficient form with, never a training
    option.

    Args:
        impl (str): ``'efficient'`` or ``'direct'``.
        *args: Positional arguments of ``LGRHead``.
        **kwargs: Keyword arguments of ``LGRHead``.

    Returns:
        LGRHead: The head.
    """
    from vlltr_mm.models.heads.lgr_attention import direct_cosine
    from vlltr_mm.models.heads.lgr_head import LGRHead

    class DirectLGRHead(LGRHead):

        def text_cosine(self, x, query):
            return direct_cosine(x, query, self.anchors, self.anchor_mask,
                                 self.attn_proj_k, self.attn_norm_k,
                                 detach_norm=self.detach_text_norm)

    heads = dict(efficient=LGRHead, direct=DirectLGRHead)
    if impl not in heads:
        raise ValueError(f"impl must be 'efficient' or 'direct', got "
                         f'{impl!r}')
    return heads[impl](*args, **kwargs)


def run_in_subprocess(script: str, spec: dict, timeout: float) -> dict:
    """Run ``script --worker <spec as JSON>`` in a fresh interpreter.

    The worker prints one ``RESULT <json>`` line; a measurement that
    fails or runs out of time comes back as ``spec`` plus ``error``.

    Args:
        script (str): The benchmark script.
        spec (dict): The case to measure.
        timeout (float): Seconds allowed.

    Returns:
        dict: The worker's result.
    """
    cmd = [sys.executable, osp.abspath(script), '--worker', json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(spec, error=f'timed out after {timeout:.0f} s')
    for line in proc.stdout.splitlines():
        if line.startswith('RESULT '):
            return json.loads(line[len('RESULT '):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return dict(spec, error=f'exit {proc.returncode}: ' + ' | '.join(tail))
