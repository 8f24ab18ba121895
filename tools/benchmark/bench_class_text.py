"""Benchmark the class-text corpus and dataset wrapper at ImageNet-LT size.

Generates a synthetic corpus in the authors' layout (default 1000 classes,
about 200 sentences each: 80 prompts plus ~120 description sentences, and
a References section to drop), then reports:

* build time without a cache (read, split, tokenise, write the cache);
* cached load time (target < 2 s);
* the per-item overhead of :class:`ClassTextDataset` over the bare
  dataset it wraps (target < 50 us/item), i.e. the cost of drawing and
  materialising one sentence per image.

Example::

    python tools/benchmark/bench_class_text.py --json-out bench.json
"""
import argparse
import json
import os.path as osp
import statistics
import tempfile
import time

import numpy as np
import torch
from mmpretrain.structures import DataSample

from vlltr_mm.datasets.class_text import ClassTextCorpus, ClassTextDataset

SYLLABLES = ('ka', 'lo', 'mi', 'ne', 'ru', 'ta', 'so', 'vi', 'den', 'gar',
             'bul', 'pes', 'tor', 'ish', 'an', 'el', 'ur', 'om')


def make_corpus_files(root: str, num_classes: int, desc_sentences: int,
                      seed: int = 0) -> str:
    """Write ``labels.txt`` and ``wiki/desc_{i}.txt``; return the root."""
    import os
    rng = np.random.default_rng(seed)
    vocab = [''.join(rng.choice(SYLLABLES, rng.integers(1, 4)))
             for _ in range(4000)]
    os.makedirs(osp.join(root, 'wiki'), exist_ok=True)
    with open(osp.join(root, 'labels.txt'), 'w') as f:
        f.write(''.join(f'{vocab[i]} {vocab[-i - 1]} {i}\n'
                        for i in range(num_classes)))
    for c in range(num_classes):
        lengths = rng.integers(6, 26, desc_sentences)
        words = rng.integers(0, len(vocab), lengths.sum())
        sentences, at = [], 0
        for i, n in enumerate(lengths):
            text = ' '.join(vocab[w] for w in words[at:at + n])
            sentences.append(f'{text[:1].upper()}{text[1:]} no{c}x{i}.')
            at += n
        half = desc_sentences // 2
        body = (' '.join(sentences[:half]) + '\n\n== Description ==\n' +
                ' '.join(sentences[half:]) +
                '\n\n== References ==\nSmith, J. (2000). A book. Press.\n')
        with open(osp.join(root, 'wiki', f'desc_{c}.txt'), 'w') as f:
            f.write(body)
    return root


class BareDataset:
    """Pre-packed items: isolates the wrapper's own cost."""

    def __init__(self, labels: np.ndarray, classes) -> None:
        self.labels = labels
        self.metainfo = dict(classes=tuple(classes))
        image = torch.zeros(3, 4, 4, dtype=torch.uint8)
        self.items = [
            dict(inputs=image, data_samples=DataSample().set_gt_label(int(y)))
            for y in labels
        ]

    def get_gt_labels(self) -> np.ndarray:
        return self.labels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> dict:
        return dict(self.items[idx])


def time_items(dataset, order, repeats: int = 3) -> float:
    """Best-of-``repeats`` seconds per item over ``order``."""
    best = float('inf')
    for _ in range(repeats):
        start = time.perf_counter()
        for i in order:
            dataset[i]
        best = min(best, (time.perf_counter() - start) / len(order))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--num-classes', type=int, default=1000)
    parser.add_argument('--sentences', type=int, default=200,
                        help='sentences per class, 80 prompts included')
    parser.add_argument('--items', type=int, default=50000)
    parser.add_argument('--work-dir', help='defaults to a temporary folder')
    parser.add_argument('--json-out')
    args = parser.parse_args()

    tmp = None
    if args.work_dir is None:
        tmp = tempfile.TemporaryDirectory()
        args.work_dir = tmp.name
    root = make_corpus_files(osp.join(args.work_dir, 'text'),
                             args.num_classes, args.sentences - 80)
    cfg = dict(labels_file=osp.join(root, 'labels.txt'),
               wiki_dir=osp.join(root, 'wiki'),
               cache_dir=osp.join(args.work_dir, 'cache'))

    start = time.perf_counter()
    corpus = ClassTextCorpus(**cfg)
    build_s = time.perf_counter() - start
    assert not corpus.from_cache
    loads = []
    for _ in range(3):
        start = time.perf_counter()
        cached = ClassTextCorpus(**cfg)
        loads.append(time.perf_counter() - start)
        assert cached.from_cache and cached.fingerprint == corpus.fingerprint
    load_s = statistics.median(loads)

    rng = np.random.default_rng(0)
    labels = rng.integers(0, corpus.num_classes, args.items)
    bare = BareDataset(labels, corpus.class_names)
    wrapped = ClassTextDataset(bare, corpus, seed=0)
    order = rng.permutation(args.items).tolist()
    bare_s = time_items(bare, order)
    wrapped_s = time_items(wrapped, order)
    overhead_us = (wrapped_s - bare_s) * 1e6

    batch = torch.from_numpy(labels[:256])
    start = time.perf_counter()
    for _ in range(100):
        corpus.get_tokens(corpus.sample_indices(batch))
    batch_us = (time.perf_counter() - start) / 100 * 1e6

    results = dict(
        num_classes=corpus.num_classes, num_sentences=corpus.num_sentences,
        num_prompts=int(corpus.is_prompt.sum()),
        num_truncated=corpus.num_truncated,
        token_store_mb=corpus.tokens.tokens.nbytes / 2**20,
        build_s=build_s, cached_load_s=load_s, cached_load_runs_s=loads,
        bare_item_us=bare_s * 1e6, wrapped_item_us=wrapped_s * 1e6,
        overhead_us_per_item=overhead_us,
        sample_and_gather_256_us=batch_us)
    print(f"corpus: {results['num_classes']} classes, "
          f"{results['num_sentences']} sentences "
          f"({results['num_prompts']} prompts), "
          f"{results['num_truncated']} truncated, token store "
          f"{results['token_store_mb']:.1f} MiB")
    print(f'build (no cache):   {build_s:8.2f} s')
    print(f'cached load:        {load_s:8.3f} s   (target < 2 s: '
          f"{'OK' if load_s < 2 else 'MISSED'})")
    print(f'item, bare dataset: {bare_s * 1e6:8.2f} us')
    print(f'item, wrapped:      {wrapped_s * 1e6:8.2f} us')
    print(f'wrapper overhead:   {overhead_us:8.2f} us/item (target < 50: '
          f"{'OK' if overhead_us < 50 else 'MISSED'})")
    print(f'sample+gather 256:  {batch_us:8.1f} us/batch')
    if args.json_out:
        with open(args.json_out, 'w') as f:
            json.dump(results, f, indent=1)
    if tmp is not None:
        tmp.cleanup()


if __name__ == '__main__':
    main()
