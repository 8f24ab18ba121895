"""DeiTCosineLR: the authors' per-epoch schedule, its checks and resume."""
import math

import pytest
import torch
from mmengine.optim import OptimWrapper
from mmpretrain.registry import PARAM_SCHEDULERS

import vlltr_mm  # noqa: F401


def wrapper(lrs=(0.1, )):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    opt = torch.optim.SGD([dict(params=[p], lr=lr)
                           for p, lr in zip(params, lrs)])
    return OptimWrapper(opt)


def build(optim, **kwargs):
    return PARAM_SCHEDULERS.build(
        dict(type='DeiTCosineLR', optimizer=optim, **kwargs))


def run(sched, optim, epochs):
    # OptimWrapper appends a parameter-less group holding the base
    # settings; the optimizer's own groups come first.
    groups = optim.optimizer.param_groups
    out = []
    for _ in range(epochs):
        out.append([g['lr'] for g in groups])
        sched.step()
    return out


def test_values_by_hand():
    optim = wrapper((0.1, 0.01))
    sched = build(optim, T_max=4, warmup_epochs=2, warmup_lr=0.001,
                  eta_min=0.0)
    got = run(sched, optim, 6)
    # t = max(e - 1, 0); warm-up 0.001 -> base in 2 steps, then cosine
    # over t / 4 from epoch 0's phase, eta_min from t = T_max on.
    cos = [0.5 * (1 + math.cos(math.pi * t / 4)) for t in (2, 3)]
    want = [[0.001, 0.001], [0.001, 0.001],
            [0.001 + 0.099 / 2, 0.001 + 0.009 / 2],
            [0.1 * cos[0], 0.01 * cos[0]], [0.1 * cos[1], 0.01 * cos[1]],
            [0.0, 0.0]]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-12, abs=1e-15)


def test_no_lag_no_warmup_is_plain_cosine():
    optim = wrapper()
    sched = build(optim, T_max=5, warmup_epochs=0, eta_min=0.01,
                  lag_one_epoch=False)
    got = [g[0] for g in run(sched, optim, 5)]
    want = [0.01 + 0.045 * (1 + math.cos(math.pi * t / 5)) for t in range(5)]
    assert got == pytest.approx(want, rel=1e-12)


def test_resume_continues_the_sequence():
    optim = wrapper()
    sched = build(optim, T_max=10, warmup_epochs=3)
    full = [g[0] for g in run(sched, optim, 10)]

    optim = wrapper()
    sched = build(optim, T_max=10, warmup_epochs=3)
    first = [g[0] for g in run(sched, optim, 4)]
    state = sched.state_dict()
    optim2 = wrapper()
    for group, old in zip(optim2.optimizer.param_groups,
                          optim.optimizer.param_groups):
        group.update(initial_lr=old['initial_lr'], lr=old['lr'])
    resumed = build(optim2, T_max=10, warmup_epochs=3, last_step=3)
    resumed.load_state_dict(state)
    # The runner restores the scheduler after its step for epoch 3.
    rest = [g[0] for g in run(resumed, optim2, 6)]
    assert first + rest == pytest.approx(full, rel=1e-12)


@pytest.mark.parametrize('kwargs, match', [
    (dict(T_max=0), 'T_max must be a positive int'),
    (dict(T_max=5, warmup_epochs=5), r'warmup_epochs must be an int in'),
    (dict(T_max=5, eta_min=-1.0), 'must be >= 0'),
    (dict(T_max=5, by_epoch=False), 'epoch schedule'),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(wrapper(), **kwargs)


def test_refuses_iteration_conversion():
    with pytest.raises(ValueError, match='cannot be converted'):
        PARAM_SCHEDULERS.get('DeiTCosineLR').build_iter_from_epoch(
            wrapper(), T_max=5, epoch_length=10)
