"""The top-1 predictions of an ``LGRHead`` sample besides its fused score,
as :class:`~.LongTailAccuracy` keeps them: one class index per sample for
each branch (``pred_score_image``, ``pred_score_text``) and for the raw
logit sum (``pred_label_logit_sum``, the authors' group rule)."""
from typing import Dict, List, Sequence

import torch

BRANCHES = ('image', 'text')

_NO_LOGIT_SUM = (
    "LongTailAccuracy(group_rule='authors') needs `pred_label_logit_sum` "
    '(the argmax of the raw logit sum, stored by LGRHead.predict) in every '
    "data sample; these predictions lack it. Use group_rule='consistent' "
    'for heads other than LGRHead.')


def extra_top1(data_samples: Sequence[dict],
               logit_sum: bool) -> Dict[str, List[int]]:
    """Top-1 class indices of one batch, by result key.

    Args:
        data_samples (Sequence[dict]): Model outputs as handed to
            ``BaseMetric.process``.
        logit_sum (bool): Also read ``pred_label_logit_sum``.

    Returns:
        dict[str, list[int]]: ``pred_image`` and ``pred_text`` (argmax of
        the branch scores) when the samples carry both, and
        ``pred_logit_sum`` if ``logit_sum``; each a list of B ints.

    Raises:
        ValueError: If ``logit_sum`` and the samples lack the field.
    """
    first = data_samples[0]
    out = {}
    if all(f'pred_score_{b}' in first for b in BRANCHES):
        for b in BRANCHES:
            scores = torch.stack(
                [s.get(f'pred_score_{b}') for s in data_samples])
            out[f'pred_{b}'] = scores.argmax(1).tolist()
    if logit_sum:
        if 'pred_label_logit_sum' not in first:
            raise ValueError(_NO_LOGIT_SUM)
        out['pred_logit_sum'] = torch.stack([
            torch.as_tensor(s.get('pred_label_logit_sum')).reshape(-1)[0]
            for s in data_samples
        ]).tolist()
    return out


def branches_of(results: List[dict]) -> tuple:
    """The branches whose top-1 every gathered result carries.

    Raises:
        ValueError: If only some results carry them.
    """
    have = sum('pred_image' in r for r in results)
    if 0 < have < len(results):
        raise ValueError(
            f'LongTailAccuracy: {have} of {len(results)} samples carry '
            'pred_score_image / pred_score_text, the others do not; '
            'evaluate the outputs of one model at a time.')
    return BRANCHES if have else ()


def top1_hits(results: List[dict], key: str,
              gt: torch.Tensor) -> torch.Tensor:
    """Bool [N]: whether the index under ``key`` of each result is its
    label ``gt`` [N]."""
    return torch.tensor([r[key] for r in results], dtype=torch.long) == gt
