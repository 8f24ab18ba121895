"""tools/benchmark/bench_logits_memory.py: quick run and the simulated
ranks it measures."""
import argparse
import json
import math
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BENCH = osp.join(REPO, 'tools', 'benchmark')
SCRIPT = osp.join(BENCH, 'bench_logits_memory.py')

FLOAT = r'([0-9]+(?:\.[0-9]+)?)'



@pytest.mark.slow
def test_quick_run(tmp_path):
    out = tmp_path / 'bench.json'
    proc = subprocess.run(
        [sys.executable, SCRIPT, '--quick', '--json', str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    # One ratio line per quick case; analytic = number of ranks.
    ratios = re.findall(
        rf'ratio global / local: analytic {FLOAT}x, measured {FLOAT}x', text)
    assert [float(a) for a, _ in ratios] == [4.0, 8.0]
    assert all(float(m) > 0 for _, m in ratios)
    assert 'case 4 ranks x 128 = 512, D=64' in text
    assert 'global square  [512x512]' in text

    res = json.loads(out.read_text())
    assert len(res['memory']) == 4
    for r in res['memory']:
        assert 'error' not in r, r
        # the losses really allocated their logits in the worker
        assert r['peak_bytes'] >= r['logits_bytes'] > 0
        rows = r['local'] if r['layout'] == 'local' else r['world'] * r[
            'local']
        assert r['logits_shape'] == [rows, r['world'] * r['local']]


def test_simulated_ranks_reproduce_the_global_loss(load_tool):
    """Every rank's simulated local-rows loss, averaged, is the loss of the
    whole batch (what DDP optimises), and the 'global' layout is it."""
    from vlltr_mm.models.losses import (
        ClassWiseContrastiveLoss,
        CLIPDistillationLoss,
    )
    bench = load_tool('tools/benchmark/bench_logits_memory.py')
    world, local, dim = 3, 4, 8
    total = world * local
    g = torch.Generator().manual_seed(0)
    feats = [
        F.normalize(torch.randn(total, dim, generator=g), dim=-1)
        for _ in range(4)
    ]
    # few classes: positives fall on other ranks too
    labels = torch.randint(0, 3, (total, ), generator=g)
    log_scale = torch.tensor(math.log(20.0))

    per_rank = []
    for r in range(world):
        mine_rows = torch.arange(r * local, (r + 1) * local)
        other_rows = torch.cat([torch.arange(0, r * local),
                                torch.arange((r + 1) * local, total)])
        mine = [f[mine_rows].clone() for f in feats]
        theirs = [f[other_rows] for f in feats]
        per_rank.append(
            bench.rank_loss('local', world, mine, theirs, labels[mine_rows],
                            labels[other_rows], log_scale))
        if r == 0:
            rank0 = (mine, theirs, labels[mine_rows], labels[other_rows])
    averaged = torch.stack(per_rank).mean()

    scale = log_scale.exp()
    direct = 0.5 * ClassWiseContrastiveLoss(label_smoothing=0.1)(
        feats[0], feats[1], labels, scale) + 0.5 * CLIPDistillationLoss()(
            *feats, scale, 1 / 0.07)
    torch.testing.assert_close(averaged, direct, rtol=1e-5, atol=1e-6)
    # The ranks' shares differ, so the average is not trivially equal.
    assert not torch.allclose(per_rank[0], per_rank[1])
    glob = bench.rank_loss('global', world, *rank0, log_scale)
    torch.testing.assert_close(glob, direct, rtol=1e-5, atol=1e-6)

    # Nothing is patched: the plain losses keep the real collectives.
    from vlltr_mm.utils import distributed
    assert ClassWiseContrastiveLoss().gather_with_grad is \
        distributed.gather_with_grad
    with pytest.raises(ValueError, match="layout must be 'local'"):
        bench.rank_loss('square', world, *rank0, log_scale)


def test_gradient_reaches_only_local_rows(load_tool):
    """The simulated gather sends this rank's slice of the gradient back
    and matches autograd through a plain concatenation."""
    bench = load_tool('tools/benchmark/bench_logits_memory.py')
    mine, theirs, lab, other_lab = bench.random_rank_inputs(4, 2, 8, seed=1)
    log_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    bench.rank_loss('global', 4, mine, theirs, lab, other_lab,
                    log_scale).backward()
    got = [m.grad.clone() for m in mine[:2]]
    assert mine[2].grad is None and mine[3].grad is None  # teacher

    leaves = [m.detach().clone().requires_grad_(i < 2)
              for i, m in enumerate(mine)]
    feats = [torch.cat([a, b]) for a, b in zip(leaves, theirs)]
    from vlltr_mm.models.losses import (
        ClassWiseContrastiveLoss,
        CLIPDistillationLoss,
    )
    scale = log_scale.detach().exp()
    loss = 0.5 * ClassWiseContrastiveLoss(label_smoothing=0.1)(
        feats[0], feats[1], torch.cat([lab, other_lab]), scale) + \
        0.5 * CLIPDistillationLoss()(*feats, scale, 1 / 0.07)
    loss.backward()
    for a, b in zip(got, leaves[:2]):
        torch.testing.assert_close(a, b.grad)


def test_memory_case_and_arguments(load_tool):
    bench = load_tool('tools/benchmark/bench_logits_memory.py')
    r = bench.memory_case(world=2, local=8, dim=16, layout='local',
                          device='cpu')
    assert r['logits_shape'] == [8, 16]
    assert r['logits_bytes'] == 8 * 16 * 4
    assert r['gathered_bytes'] == 16 * 16 * 4
    assert r['peak_bytes'] >= 0

    assert bench.parse_case('8x256x1024') == (8, 256, 1024)
    for bad in ('8x256', '8x0x4', 'axbxc'):
        with pytest.raises(argparse.ArgumentTypeError, match='WxBxD'):
            bench.parse_case(bad)
    args = bench.parse_args(['--device', 'cpu'])
    assert args.threads == 1
    assert args.memory_cases == [(8, 256, 1024), (32, 128, 1024)]
    quick = bench.parse_args(['--quick', '--device', 'cpu'])
    assert quick.memory_cases == [(4, 128, 64), (8, 64, 64)]
