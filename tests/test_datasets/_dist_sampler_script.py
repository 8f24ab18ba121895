"""Worker for ``test_samplers.test_two_process_sharding``.

Run under ``python -m torch.distributed.run --nproc_per_node=2``; every rank
writes what its samplers yield to ``<out>/rank{RANK}.pt``.
"""
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

from vlltr_mm.datasets.samplers import ClassAwareSampler, SquareRootSampler

sys.path.insert(0, os.path.dirname(__file__))
from test_samplers import ToyDataset, toy_labels  # noqa: E402


def record(sampler):
    return {
        'global': sampler.global_indices(),
        'shard': torch.tensor(list(sampler)),
        'len': len(sampler),
        'seed': sampler.seed,
    }


def main(out_dir):
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    assert dist.get_world_size() == 2
    labels = toy_labels()
    assert len(labels) % 2 == 0
    dataset = ToyDataset(labels)

    result = dict(labels=torch.from_numpy(labels))
    result['seeded'] = record(SquareRootSampler(dataset, seed=5))
    # seed=None: rank 0 draws a seed and shares it (sync_random_seed).
    synced = SquareRootSampler(dataset)
    synced.set_epoch(3)
    result['synced_seed'] = record(synced)
    result['odd_round_up'] = record(
        SquareRootSampler(dataset, seed=1, num_samples=7))
    result['odd_no_round_up'] = record(
        SquareRootSampler(dataset, seed=1, num_samples=7, round_up=False))

    aware = ClassAwareSampler(dataset, seed=2, num_samples=10_000)
    shards = []
    for epoch in range(4):
        aware.set_epoch(epoch)
        shards.append(torch.tensor(list(aware)))
    result['aware'] = torch.cat(shards)
    assert np.all(np.diff([len(s) for s in shards]) == 0)

    os.makedirs(out_dir, exist_ok=True)
    torch.save(result, os.path.join(out_dir, f'rank{rank}.pt'))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
