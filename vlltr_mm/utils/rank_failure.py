"""What a rank does when it fails inside a process group: end the job.

A rank that raises must not wait for the others. They are blocked in a
collective (DDP's gradient all-reduce, a metric gather) that it will never
join, so a barrier, a group teardown or the interpreter's shutdown that
talks to them hangs the whole job until the collective timeout (gloo:
30 min; NCCL: its watchdog). :func:`exit_all_ranks_on_error` prints the
rank's error once and leaves at once instead; torchrun's agent then stops
the other workers (its default reaction to a worker's non-zero exit).

Kept apart from :mod:`vlltr_mm.utils.distributed` (process-group set-up
and collectives), which is the normal path; this is the error path of
``tools/train.py`` and ``tools/test.py``.
"""
import contextlib
import os
import socket
import sys
import time
import traceback
from typing import Iterator

import torch.distributed as dist

# What gloo's TCP transport says when a peer process has gone; NCCL and
# store failures raise ``torch.distributed.DistError`` subclasses.
_PEER_LOST = ('closed by peer', 'reset by peer')
_LOST_PEER_DELAY_S = 3.0


@contextlib.contextmanager
def exit_all_ranks_on_error(what: str) -> Iterator[None]:
    """End this process at once, non-zero, if the block raises in a group.

    On a successful block nothing happens. Outside a process group the
    exception propagates as usual. Inside one, the rank prints its
    traceback once, headed by its rank, host and pid, to stderr and leaves
    with ``os._exit`` (no barrier, no teardown, no atexit handlers): its
    closed connections fail the other ranks' collectives, and torchrun
    stops the remaining workers as soon as one exits non-zero. A rank whose
    own error is such a broken collective prints one line instead of a
    traceback and leaves a few seconds later, so that the rank that failed
    first stays the visible cause (and torchrun's "root cause").

    Args:
        what (str): What failed, for the message (e.g. ``'training'``).

    Yields:
        None
    """
    try:
        yield
    except BaseException as error:
        if not (dist.is_available() and dist.is_initialized()):
            raise
        code = error.code if isinstance(error, SystemExit) else 1
        if not isinstance(code, int) or code == 0:
            code = 1
        head = (f'[rank {dist.get_rank()}/{dist.get_world_size()} on '
                f'{socket.gethostname()}, pid {os.getpid()}] {what} failed')
        lost_peer = isinstance(error, dist.DistError) or any(
            s in str(error) for s in _PEER_LOST)
        if lost_peer:
            # Another rank most likely failed first and printed the cause:
            # one line here keeps that one in view, and leaving a little
            # later lets torchrun name that rank as the root cause.
            first = (str(error).strip().splitlines() or [''])[0]
            body = (f' because a collective broke (another rank has '
                    f'probably failed; see its message): '
                    f'{type(error).__name__}: {first}\n')
        else:
            body = ':\n' + ''.join(traceback.format_exception(error))
        sys.stdout.flush()
        sys.stderr.write(head + body)
        sys.stderr.flush()
        if lost_peer:
            time.sleep(_LOST_PEER_DELAY_S)
        os._exit(code)
