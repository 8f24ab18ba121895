"""Refuse checkpoints that would give silently wrong results.

MMEngine loads ``load_from`` / ``--resume`` / the tested checkpoint with
``strict=False``: keys that are missing, unexpected or of another shape
are only logged, and the run goes on with whatever did not load left at
its initial value (a random classifier, zero anchors). A NaN checkpoint
loads as well. This hook turns each of these into an error that names the
file and the keys.

A partial load that the config allows is said in one line (counts per
allowed prefix), and the checkpoint handed on to MMEngine is made to fit
the model exactly (allowed unexpected keys dropped, allowed missing or
mis-shaped keys set to the model's own values), so MMEngine's own
key-by-key dump of the same facts, thousands of characters long for a
CLIP tower, is not printed; the weights loaded are the same.
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop, find_latest_checkpoint
from mmpretrain.registry import HOOKS

from ...utils.checkpoint import (
    check_checkpoint_file,
    list_keys,
    nonfinite_keys,
    state_dict_mismatch,
    strip_module_prefix,
)


def _matches(key: str, prefixes: Sequence[str]) -> bool:
    return any(key.startswith(p) for p in prefixes)


def _per_prefix(keys: Sequence[str], prefixes: Sequence[str]) -> str:
    """``'head. 15, logit_scale 1'``: allowed keys counted per prefix."""
    counts = {p: sum(k.startswith(p) for k in keys) for p in prefixes}
    return ', '.join(f'{p} {n}' for p, n in counts.items() if n)


def _fit_allowed(checkpoint: dict, model_state: Dict[str, object],
                 allowed: Dict[str, List[str]]) -> None:
    """Make ``checkpoint``'s state dict fit the model where allowed.

    Allowed unexpected keys are dropped; allowed missing and mis-shaped
    keys get the model's current tensors (loading them changes nothing).
    The state dict is replaced by a new dict, not edited, so hooks that
    kept a reference to it still see what the file holds.
    """
    nested = isinstance(checkpoint.get('state_dict'), dict)
    state = checkpoint['state_dict'] if nested else checkpoint
    drop = set(allowed.get('unexpected', ()))
    own = set(allowed.get('missing', ())) | {
        entry.split(': checkpoint ', 1)[0]
        for entry in allowed.get('mismatched', ())
    }
    fitted = {}
    for key, value in state.items():
        bare = key[len('module.'):] if key.startswith('module.') else key
        if bare not in drop and bare not in own:
            fitted[key] = value
    fitted.update({key: model_state[key] for key in sorted(own)})
    if nested:
        checkpoint['state_dict'] = fitted
    else:
        state.clear()
        state.update(fitted)


def _swap_strict_load(runner, value: Optional[bool]) -> Optional[bool]:
    # StrictLoadMixin's switch on the runner's model; None if it has none.
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    old = getattr(model, 'strict_load', None)
    if old is not None and value is not None:
        model.strict_load = value
    return old


@HOOKS.register_module()
class CheckpointCheckHook(Hook):
    """Check every checkpoint the runner loads, and every one it saves.

    * ``before_run``: the file about to be loaded (``load_from``, or the
      latest checkpoint of the work dir for an automatic resume) exists, is
      not empty and is not truncated; the model's own check of loads by
      hand (``StrictLoadMixin.strict_load``) is off until ``after_run``.
    * ``after_load_checkpoint``: its state dict fits the model (no missing
      or unexpected key, no shape mismatch) and every floating-point
      tensor is finite.
    * ``before_save_checkpoint``: the weights about to be saved are finite.

    Partial loading is allowed only where a config asks for it, and only
    for ``load_from`` when it *initialises training* (e.g. the LGR stage
    starts from the CVLP checkpoint: the head is new and the text tower is
    dropped). Resuming, ``tools/test.py``, validation-only runs always need
    the whole model. The allowances are key prefixes; the skipped keys are
    logged. Example (``configs/vlltr/lgr_r50_imagenet-lt.py``)::

        default_hooks = dict(checkpoint_check=dict(
            allow_missing=['head.'],
            allow_unexpected=['text_encoder.', 'logit_scale']))

    Args:
        allow_missing (Sequence[str]): Prefixes of model keys that
            ``load_from`` may lack when training starts. Defaults to ().
        allow_unexpected (Sequence[str]): Prefixes of checkpoint keys that
            the model may lack (they are ignored). Defaults to ().
        allow_mismatched (Sequence[str]): Prefixes of keys whose shape may
            differ (the model keeps its initial values). Defaults to ().
    """

    priority = 'LOWEST'  # see the checkpoint as the other hooks left it

    def __init__(self,
                 allow_missing: Sequence[str] = (),
                 allow_unexpected: Sequence[str] = (),
                 allow_mismatched: Sequence[str] = ()):
        for name, value in (('allow_missing', allow_missing),
                            ('allow_unexpected', allow_unexpected),
                            ('allow_mismatched', allow_mismatched)):
            if isinstance(value, str) or not all(
                    isinstance(p, str) for p in value):
                raise TypeError(f'CheckpointCheckHook: {name} must be a '
                                f'list of key prefixes, got {value!r}')
        self.allow = dict(
            missing=tuple(allow_missing),
            unexpected=tuple(allow_unexpected),
            mismatched=tuple(allow_mismatched))
        self._source: Optional[str] = None
        self._strict_load: Optional[bool] = None

    def before_run(self, runner) -> None:
        # Runs before Runner.load_or_resume. The model's own check of loads
        # outside a Runner (StrictLoadMixin) would refuse the partial loads
        # the config allows; this hook checks them instead.
        self._strict_load = _swap_strict_load(runner, False)
        load_from = getattr(runner, '_load_from', None)
        if getattr(runner, '_resume', False) and load_from is None:
            load_from = find_latest_checkpoint(runner.work_dir)
            if load_from == '':
                raise RuntimeError(
                    f'{osp.join(runner.work_dir, "last_checkpoint")} is '
                    f'empty; delete it to start afresh or resume from a '
                    f'given file (--resume work_dir/epoch_N.pth).')
        self._source = load_from
        if load_from is not None:
            check_checkpoint_file(load_from)

    def after_run(self, runner) -> None:
        # Loads by hand after the run are checked by the model again.
        _swap_strict_load(runner, self._strict_load)

    def _mode(self, runner) -> str:
        if getattr(runner, '_resume', False):
            return 'resume'
        # Runner.train() builds the train loop before `before_run`;
        # test() and val() leave it a config dict (or None).
        training = isinstance(getattr(runner, '_train_loop', None), BaseLoop)
        return 'init' if training else 'test'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        source = self._source or 'the loaded checkpoint'
        state = checkpoint.get('state_dict', checkpoint)
        state = strip_module_prefix(state)
        bad = nonfinite_keys(state)
        if bad:
            raise RuntimeError(
                f'Checkpoint {source} holds NaN/Inf weights in '
                f'{len(bad)} tensors ({list_keys(bad)}): the run that '
                f'wrote it diverged. Use an earlier checkpoint.')
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        mode = self._mode(runner)
        model_state = model.state_dict()
        found = dict(
            zip(('missing', 'unexpected', 'mismatched'),
                state_dict_mismatch(model_state, state)))
        allowed = {}
        if mode == 'init':
            for kind, keys in found.items():
                allowed[kind] = [
                    k for k in keys if _matches(k, self.allow[kind])
                ]
                found[kind] = [
                    k for k in keys if not _matches(k, self.allow[kind])
                ]
        if any(found.values()):
            lines = [
                f'  {kind} keys ({len(keys)}): {list_keys(keys)}'
                for kind, keys in found.items() if keys
            ]
            role = dict(
                init='load_from of a new training run',
                resume='resumed', test='loaded for testing')[mode]
            raise RuntimeError(
                f'Checkpoint {source} ({role}) does not fit the model of '
                f'this config:\n' + '\n'.join(lines) + '\n'
                'Check that the config (head, num_classes, num_anchors, '
                'towers) is the one the checkpoint was trained with. To '
                'start training from part of a checkpoint on purpose, '
                'list the key prefixes in default_hooks.checkpoint_check '
                '(allow_missing / allow_unexpected / allow_mismatched).')
        if not any(allowed.values()):
            return
        _fit_allowed(checkpoint, model_state, allowed)
        what = dict(
            missing='missing keys keep the initial values',
            unexpected='unexpected keys ignored',
            mismatched='keys of another shape keep the initial values')
        runner.logger.info(
            f'Partial load of {source} allowed by the config: ' + '; '.join(
                f'{len(keys)} {what[kind]} '
                f'({_per_prefix(keys, self.allow[kind])})'
                for kind, keys in allowed.items() if keys) + '.')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        bad = nonfinite_keys(checkpoint.get('state_dict', {}))
        if bad:
            # The meta holds the numbers the checkpoint would be named by.
            meta = checkpoint.get('meta', {})
            raise RuntimeError(
                f'Not saving a checkpoint at epoch '
                f'{meta.get("epoch", runner.epoch)}, iter '
                f'{meta.get("iter", runner.iter)}: {len(bad)} weight '
                f'tensors are NaN/Inf ({list_keys(bad)}). Training '
                f'diverged; lower the learning rate or enable gradient '
                f'clipping (optim_wrapper.clip_grad).')
