"""Run one part of ``gpu_check.py`` in a time-limited child process.

A part is forked rather than run in place so that one that overruns can
be killed and a crash or an out-of-memory error stays in it. The child
sends every finished row to the parent at once, so the rows done before
a kill are kept; :func:`finish_part` then demotes a part whose cases were
skipped for time or failed a check.

Imports only the standard library (torch lazily), so ``gpu_check.py`` can
load it before it sets the environment that torch reads on import.
"""
import multiprocessing as mp
import time
import traceback


class PartContext:
    """What a part sees in its child process.

    Args:
        device (str): ``'cpu'`` or ``'cuda'``.
        quick (bool): Whether this is the tiny CI run.
        sizes (dict): The part sizes (``gpu_check_common.FULL`` or
            ``QUICK``).
        deadline (float): ``time.monotonic()`` after which no new case may
            start.
        conn (Connection, optional): Pipe to the parent; None keeps the
            rows in :attr:`rows` only. Defaults to None.
        hints (dict, optional): Findings of earlier parts, e.g.
            ``{'batches': {'RN50/bf16': 256}}``, and inputs from the
            command line (``'zero_shot'``). Defaults to None.
    """

    def __init__(self, device, quick, sizes, deadline, conn=None,
                 hints=None):
        self.device, self.quick, self.sizes = device, quick, sizes
        self.deadline, self.conn = deadline, conn
        self.hints = hints or {}
        self.rows = {}

    def emit(self, table, row):
        """Record ``row`` (a dict) in ``table`` and send it to the parent
        now, so that it survives if the part is killed later."""
        if 'ok' in row:
            row['status'] = 'ok' if row['ok'] else 'failed'
        row.setdefault('status', 'ok')
        self.rows.setdefault(table, []).append(row)
        if self.conn is not None:
            self.conn.send(('row', table, row))

    def skip_reason(self, estimate_s):
        """Why a case expected to take ``estimate_s`` seconds must not
        start (None when it fits before the deadline)."""
        left = self.deadline - time.monotonic()
        if estimate_s < left:
            return None
        return (f'would not fit: {max(left, 0):.1f} s left before the '
                f'part deadline, the last similar case took '
                f'{estimate_s:.1f} s')

    def autocast_dtypes(self):
        """``{'bf16': reason, 'fp16': reason}``; reason None = runnable."""
        import torch
        cuda = self.device.startswith('cuda')
        bf16 = not cuda or torch.cuda.is_bf16_supported()
        return {'bf16': None if bf16 else 'this GPU has no bf16',
                'fp16': None if cuda else 'fp16 autocast with GradScaler '
                'is CUDA-only (CPU autocast runs bf16)'}

    def sync(self):
        """Wait for queued GPU work, so that timers see all of it."""
        if self.device.startswith('cuda'):
            import torch
            torch.cuda.synchronize()


def _child(fn, ctx, conn):
    # The part's outcome always reaches the parent, which would otherwise
    # wait for it until the time limit.
    try:
        conn.send(('done', fn(ctx)))
    except BaseException as error:  # reported, never hangs the parent
        conn.send(('error', f'{type(error).__name__}: {error}',
                   traceback.format_exc()))
    finally:
        conn.close()


def run_part(fn, limit, device='cpu', quick=True, sizes=None, hints=None):
    """Run ``fn(ctx)`` in a forked child for at most ``limit`` seconds.

    Forked rather than spawned: the child starts with this process's
    imports (seconds on a small machine). The parent must not have
    initialised CUDA, or the child could not use it.

    Args:
        fn (callable): The part; gets a :class:`PartContext`, may return a
            dict that is merged into the results.
        limit (float): Seconds before the child is killed.
        device (str): Passed to the context. Defaults to 'cpu'.
        quick (bool): Passed to the context. Defaults to True.
        sizes (dict, optional): Passed to the context. Defaults to None.
        hints (dict, optional): Passed to the context. Defaults to None.

    Returns:
        dict: ``status`` (ok / skipped / error), ``reason``, ``elapsed_s``
        and ``results`` (the rows per table), plus ``traceback`` on error.
    """
    mp_ctx = mp.get_context('fork')
    recv, send = mp_ctx.Pipe(duplex=False)
    start = time.monotonic()
    end = start + limit
    # The child stops starting cases a little before it would be killed.
    deadline = end - min(5.0, 0.1 * limit)
    ctx = PartContext(device, quick, sizes or {}, deadline, send, hints)
    # Daemonic: if this process dies, its running part goes with it.
    proc = mp_ctx.Process(target=_child, args=(fn, ctx, send), daemon=True)
    proc.start()
    send.close()
    rows, extra = {}, None
    out = dict(status='error', reason=None)
    while True:
        left = end - time.monotonic()
        if left <= 0 or not recv.poll(left):
            out = dict(status='skipped', reason=(
                f'stopped at its time limit of {limit:.1f} s (part timeout '
                'or the rest of the budget); the rows before are kept'))
            break
        try:
            msg = recv.recv()
        except EOFError:
            proc.join(5)
            out['reason'] = (f'the part process died (exit code '
                             f'{proc.exitcode}; killed for memory?)')
            break
        if msg[0] == 'row':
            rows.setdefault(msg[1], []).append(msg[2])
        elif msg[0] == 'done':
            out, extra = dict(status='ok', reason=None), msg[1]
            break
        else:
            out = dict(status='error', reason=msg[1], traceback=msg[2])
            break
    if proc.is_alive():
        proc.kill()
    proc.join(5)
    recv.close()
    results = dict(rows)
    if isinstance(extra, dict):
        results.update(extra)
    out.update(elapsed_s=time.monotonic() - start, results=results)
    return finish_part(out)


def finish_part(out):
    """Demote a part whose cases were skipped for time or failed a check.

    Args:
        out (dict): A part's record from :func:`run_part`.

    Returns:
        dict: ``out``, with ``status`` and ``reason`` updated.
    """
    rows = [r for table in out['results'].values()
            if isinstance(table, list) for r in table]
    failed = [r['check'] for r in rows if r.get('ok') is False]
    timed = [r for r in rows if r.get('skip') == 'time']
    if out['status'] == 'ok' and failed:
        out.update(status='error',
                   reason='check(s) failed: ' + '; '.join(failed))
    elif out['status'] == 'ok' and timed:
        out.update(status='skipped',
                   reason=f'{len(timed)} case(s) skipped to stay within '
                   'the time limit: ' + timed[0]['reason'])
    return out
