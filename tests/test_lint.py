"""The code base stays ruff-clean (pycodestyle, pyflakes, isort; 79 cols)."""
import os.path as osp
import shutil
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_ruff_clean():
    # The ruff of this environment (requirements-test.txt), not any other.
    ruff = osp.join(osp.dirname(sys.executable), 'ruff')
    if not osp.isfile(ruff):
        ruff = shutil.which('ruff')
    proc = subprocess.run(
        [ruff, 'check', 'vlltr_mm', 'tools', 'tests', 'configs'],
        cwd=ROOT,
        capture_output=True,
        text=True)
    assert proc.returncode == 0, proc.stdout[-4000:]
