"""Stop training at the first non-finite loss."""
from typing import Optional

import torch
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Raise as soon as a training loss is NaN or Inf.

    Without it a diverged run carries on for all its epochs, logs ``nan``
    and saves NaN checkpoints with exit status 0. The check reads the loss
    terms that ``train_step`` returns (already on the host for logging, so
    it costs one small reduction per iteration).

    Under ``AmpOptimWrapper`` with a dynamic loss scale an overflow shows
    in the gradients, which the scaler skips; a non-finite *loss* means
    the forward pass itself overflowed, so it stops the run as well.
    """

    priority = 'HIGH'  # before the logger and checkpoint hooks

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if not outputs:
            return
        terms = {
            k: v.detach() for k, v in outputs.items()
            if isinstance(v, torch.Tensor) and v.is_floating_point()
        }
        if not terms:
            return
        values = torch.stack([v.float().mean() for v in terms.values()])
        if bool(torch.isfinite(values).all()):
            return
        shown = ', '.join(f'{k}={float(v):.4g}'
                          for k, v in zip(terms, values.tolist()))
        lrs = runner.optim_wrapper.get_lr() if hasattr(
            runner.optim_wrapper, 'get_lr') else {}
        lr = ', '.join(f'{k}={v[0]:.3g}' for k, v in lrs.items())
        amp = type(runner.optim_wrapper).__name__ == 'AmpOptimWrapper'
        raise RuntimeError(
            f'Non-finite loss at epoch {runner.epoch + 1}, iteration '
            f'{runner.iter + 1} (batch {batch_idx + 1}): {shown}. Training '
            f'stopped; no checkpoint was written from these weights. '
            f'Current learning rate: {lr or "unknown"}. Lower '
            f'optim_wrapper.optimizer.lr, add warm-up or '
            f'optim_wrapper.clip_grad'
            + ('; under AMP (fp16) try optim_wrapper.dtype="bfloat16" or '
               'train without --amp.' if amp else
               '; if it only happens with --amp, keep training in fp32.'))
