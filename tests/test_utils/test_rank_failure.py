"""exit_all_ranks_on_error: a no-op outside a process group; inside one, the
message, the exit status and the delay of a rank whose collective broke.
Real one-rank gloo groups in subprocesses (the function ends its process);
the multi-rank behaviour is tested through tools/dist_*.sh in
tests/test_tools/test_dist_fail_fast.py."""
import re
import socket
import subprocess
import sys
import time

import pytest

from vlltr_mm.utils.rank_failure import exit_all_ranks_on_error

PROBE = '''
import sys
import torch.distributed as dist
from vlltr_mm.utils.rank_failure import exit_all_ranks_on_error
dist.init_process_group('gloo', init_method=f'file://{sys.argv[1]}',
                        rank=0, world_size=1)
with exit_all_ranks_on_error('probe'):
    print('inside', flush=True)
    raise eval(sys.argv[2])
print('after the block')
'''


def test_outside_a_group_the_exception_propagates():
    with exit_all_ranks_on_error('probe'):
        pass  # success: nothing happens
    with pytest.raises(ValueError, match='boom'):
        with exit_all_ranks_on_error('probe'):
            raise ValueError('boom')


@pytest.mark.parametrize('error, code, message, seconds', [
    ("ValueError('boom')", 1,
     r"probe failed:\nTraceback \(most recent call last\):\n(.|\n)*"
     r"\nValueError: boom\n$", 0),
    ('SystemExit(3)', 3, r'probe failed:\nTraceback(.|\n)*SystemExit: 3\n$',
     0),
    ("RuntimeError('[pair.cc:561] Connection closed by peer [::1]:5\\n"
     "more')", 1,
     r'probe failed because a collective broke \(another rank has '
     r'probably failed; see its message\): RuntimeError: \[pair.cc:561\] '
     r'Connection closed by peer \[::1\]:5\n$', 3),
], ids=['traceback', 'exit-status', 'broken-collective'])
def test_inside_a_group_the_rank_reports_and_exits(tmp_path, error, code,
                                                   message, seconds):
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, '-c', PROBE, str(tmp_path / 'store'), error],
        capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    assert proc.returncode == code, proc.stderr[-3000:]
    assert proc.stdout == 'inside\n'  # and nothing after the block ran
    head = rf'\[rank 0/1 on {re.escape(socket.gethostname())}, pid \d+\] '
    err = proc.stderr[proc.stderr.find('[rank 0/1'):]
    assert re.fullmatch(head + message, err), proc.stderr[-3000:]
    assert elapsed >= seconds
