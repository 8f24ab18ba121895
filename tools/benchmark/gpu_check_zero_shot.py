"""The zero-shot part of ``gpu_check.py``: the first-hour check on a GPU.

Runs ``tools/analysis/zero_shot.py`` (imported, in the part's child
process) on a CVLP config with a local CLIP file as both towers' weights
and the dataset under ``--data-root``: the initial CLIP's zero-shot test
accuracy, overall / many / medium / few, against the paper's figure
(Tables 1-3) when the config is a shipped ResNet-50 benchmark. Without
``--clip-weights`` the part does not start: ``gpu_check.py`` records it
as skipped with the reason.

Not meant to be run directly; see ``gpu_check.py``.
"""
import os.path as osp
import time

from gpu_check_common import load_script

HERE = osp.dirname(osp.abspath(__file__))
TOOL = osp.join(osp.dirname(HERE), 'analysis', 'zero_shot.py')
#: Points of overall accuracy by which the run may miss the paper before
#: the check fails: +-1 is normal (class names, resize details); a wrong
#: class order, normalisation, tokenizer or weights costs far more.
TOLERANCE = 2.0


def zero_shot_argv(inputs, work_dir):
    """The command line of ``zero_shot.py`` for the part's inputs.

    Args:
        inputs (dict): ``config``, ``clip_weights``, and optionally
            ``data_root``, ``text_root`` and ``options`` (more
            ``--cfg-options``).
        work_dir (str): The tool's ``--work-dir``.

    Returns:
        list[str]: Arguments for ``zero_shot.main``.
    """
    options = [f'model.{tower}.pretrained={inputs["clip_weights"]}'
               for tower in ('backbone', 'text_encoder')]
    for root in ('data_root', 'text_root'):
        if inputs.get(root):
            # The config's root keys move every path under them.
            options.append(f'{root}={inputs[root]}')
    options += list(inputs.get('options') or [])
    return [inputs['config'], '--work-dir', work_dir, '--cfg-options',
            *options]


def part_zero_shot(ctx):
    """Zero-shot test of the initial CLIP with a CVLP config.

    Args:
        ctx (PartContext): ``ctx.hints['zero_shot']`` holds the inputs of
            :func:`zero_shot_argv` and ``work_dir``; the row goes to
            ``'checks'`` (a paper figure to meet) or ``'cases'``.
    """
    inputs = ctx.hints['zero_shot']
    tool = load_script('zero_shot', osp.dirname(TOOL))
    start = time.monotonic()
    result = tool.main(zero_shot_argv(inputs, inputs['work_dir']))
    measured, paper = result['measured'], result['paper']
    row = dict(config=osp.basename(inputs['config']), split=result['split'],
               weights=osp.basename(inputs['clip_weights']), **measured,
               seconds=time.monotonic() - start, note=result['note'])
    if not paper:
        ctx.emit('cases', row)
        return
    row.update({f'paper_{k}': v for k, v in paper.items()})
    diff = measured['overall'] - paper['overall']
    ctx.emit('checks', dict(
        row, check=f"zero-shot {row['config']} vs paper", value=abs(diff),
        diff=diff, tol=TOLERANCE, ok=abs(diff) <= TOLERANCE))
