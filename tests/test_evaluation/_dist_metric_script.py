"""Worker for ``test_long_tail_accuracy.test_distributed_matches_single_...``.

Run under ``python -m torch.distributed.run --nproc_per_node=2``. Each rank
feeds its share of the test samples to ``LongTailAccuracy`` and calls
``evaluate(size)``; the results of every case go to
``<out>/rank{RANK}.json``.
"""
import json
import os
import sys

import torch.distributed as dist
from mmengine.dataset import DefaultSampler

from vlltr_mm.evaluation.metrics import LongTailAccuracy

sys.path.insert(0, os.path.dirname(__file__))
from test_long_tail_accuracy import COUNTS, make_samples  # noqa: E402


def shards(rank, size):
    """Indices of the samples that ``rank`` evaluates, per case."""
    data = list(range(size))
    odd = data[:-1]
    half = (len(odd) + 1) // 2
    return {
        # MMEngine's val sampler: even size, odd size padded by repeating
        # sample 0, odd size without padding, and shuffled with padding.
        'strided': list(DefaultSampler(data, shuffle=False)),
        'padded': list(DefaultSampler(odd, shuffle=False)),
        'uneven': list(DefaultSampler(odd, shuffle=False, round_up=False)),
        'shuffled': list(DefaultSampler(odd, shuffle=True, seed=3)),
        # Contiguous, unequal halves (5 and 4 samples).
        'halves': odd[:half] if rank == 0 else odd[half:],
    }


def main(out_dir):
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    samples = make_samples()
    results = {}
    for case, indices in shards(rank, len(samples)).items():
        size = len(samples) if case == 'strided' else len(samples) - 1
        for device in ('cpu', 'gpu'):
            # 'gpu' gathers with all_gather_object, which gloo supports.
            metric = LongTailAccuracy(
                topk=(1, 2),
                class_counts=COUNTS,
                per_class=True,
                collect_device=device)
            for start in range(0, len(indices), 2):
                batch = [samples[i] for i in indices[start:start + 2]]
                metric.process(None, batch)
            results[f'{case}_{device}'] = metric.evaluate(size)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f'rank{rank}.json'), 'w') as f:
        json.dump(dict(indices=shards(rank, len(samples)), results=results),
                  f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
