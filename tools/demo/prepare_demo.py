"""Prepare every asset of the offline CPU demo in one folder.

1. Fashion-MNIST-LT (``tools/data/make_fashion_mnist_lt.py``) under
   ``OUT_DIR/fashion_mnist_lt``.
2. A check of the demo class text (``configs/vlltr/demo_text``): its
   labels match the data's, every class keeps description sentences once
   the reference sections are dropped, and the sentences fit the demo
   model's context length.
3. The demo CLIP checkpoint (``vlltr_mm.demo.demo_clip``) as
   ``OUT_DIR/demo_clip.pth``.

Each step skips work that is already done with the same arguments. A
summary with all paths is written to ``OUT_DIR/demo_assets.json``.

Example::

    python tools/demo/prepare_demo.py            # -> data/demo
"""
import argparse
import glob
import importlib.util
import json
import os
import os.path as osp
import time
import warnings
from typing import Dict, List, Optional

import numpy as np

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_TEXT_DIR = osp.join(REPO, 'configs', 'vlltr', 'demo_text')


def _load_data_tool():
    path = osp.join(REPO, 'tools', 'data', 'make_fashion_mnist_lt.py')
    spec = importlib.util.spec_from_file_location('make_fashion_mnist_lt',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_demo_text(text_dir: str, class_names: List[str],
                    min_sentences: int = 5) -> Dict:
    """Check the demo class text against the data and the demo tokenizer.

    Args:
        text_dir (str): Folder with ``labels.txt`` and ``wiki/desc_{i}.txt``.
        class_names (list[str]): The dataset's class names, label order.
        min_sentences (int): Fewest description sentences (templates
            excluded) a class may keep. Defaults to 5.

    Returns:
        dict: ``sentences`` (description sentences per class), ``prompts``
        (template sentences per class), ``max_tokens`` (longest sentence,
        special tokens included) and ``context_length``.

    Raises:
        ValueError: If names differ or a sentence would be truncated. A
            class with fewer than ``min_sentences`` description sentences
            only warns: the prompts still describe it, and a user's text
            may be short.
    """
    import open_clip

    from vlltr_mm.datasets.annotation_io import read_class_names
    from vlltr_mm.datasets.class_text import ClassTextCorpus
    from vlltr_mm.demo.demo_clip_config import (
        DEMO_CONTEXT_LENGTH,
        DEMO_MODEL_NAME,
        hf_offline,
    )

    labels_file = osp.join(text_dir, 'labels.txt')
    text_names = read_class_names(labels_file)
    if text_names != list(class_names):
        raise ValueError(f'{labels_file} lists {text_names}, the dataset '
                         f'{list(class_names)}')
    with hf_offline():
        corpus = ClassTextCorpus(
            labels_file=labels_file, wiki_dir=osp.join(text_dir, 'wiki'),
            tokenizer=DEMO_MODEL_NAME, context_length=DEMO_CONTEXT_LENGTH)
        tokenizer = open_clip.get_tokenizer(DEMO_MODEL_NAME)
    per_class = np.diff(corpus.class_offsets)
    prompts = np.bincount(corpus.sentence_labels[corpus.is_prompt],
                          minlength=corpus.num_classes)
    described = per_class - prompts
    thin = [corpus.class_names[c] for c in np.flatnonzero(
        described < min_sentences)]
    if thin:
        warnings.warn(f'{text_dir}: fewer than {min_sentences} description '
                      f'sentences for {thin}; AnSS will choose mostly '
                      'prompts for them')
    lengths = [
        len(ids) for ids in tokenizer.tokenizer(
            corpus.sentences, add_special_tokens=True)['input_ids']
    ]
    too_long = [s for s, n in zip(corpus.sentences, lengths)
                if n > DEMO_CONTEXT_LENGTH]
    if too_long:
        raise ValueError(f'{len(too_long)} sentences exceed '
                         f'{DEMO_CONTEXT_LENGTH} tokens, e.g. '
                         f'{too_long[0]!r}')
    return dict(sentences=described.tolist(), prompts=prompts.tolist(),
                max_tokens=max(lengths), context_length=DEMO_CONTEXT_LENGTH)


def prepare_demo(out_dir: str = 'data/demo',
                 text_dir: str = DEMO_TEXT_DIR,
                 seed: int = 0,
                 download: bool = True,
                 data_name: str = 'fashion_mnist_lt',
                 data_kwargs: Optional[dict] = None) -> Dict:
    """Build the demo data and checkpoint and check the demo text.

    Args:
        out_dir (str): Output folder. Defaults to ``'data/demo'``.
        text_dir (str): Demo class text folder. Defaults to
            ``configs/vlltr/demo_text`` of this repository.
        seed (int): Seed of the data split and of the projections.
            Defaults to 0.
        download (bool): Allow downloading Fashion-MNIST through torchvision
            when the Debian package files are absent. Defaults to True.
        data_name (str): Sub-folder of the data. Defaults to
            ``'fashion_mnist_lt'``.
        data_kwargs (dict, optional): More arguments of
            ``make_fashion_mnist_lt`` (e.g. a smaller ``n_max`` for smoke
            runs). Defaults to None.

    Returns:
        dict: The summary also written to ``demo_assets.json``.
    """
    from vlltr_mm.demo import demo_clip
    from vlltr_mm.utils.files import atomic_write

    os.makedirs(out_dir, exist_ok=True)
    timings = {}
    start = time.perf_counter()
    data = _load_data_tool().make_fashion_mnist_lt(
        osp.join(out_dir, data_name), seed=seed, download=download,
        **(data_kwargs or {}))
    timings['data_s'] = time.perf_counter() - start
    print(f"data: {'built' if data['built'] else 'up to date'} "
          f"({data['root']}), train counts {data['train_counts']}")

    start = time.perf_counter()
    text = check_demo_text(text_dir, data['classes'])
    timings['text_s'] = time.perf_counter() - start
    print(f"text: ok, description sentences per class {text['sentences']}"
          f", longest {text['max_tokens']} / {text['context_length']} "
          'tokens')

    start = time.perf_counter()
    ckpt = osp.join(out_dir, 'demo_clip.pth')
    ckpt_mtime = osp.getmtime(ckpt) if osp.isfile(ckpt) else None
    demo_clip.build_demo_clip_checkpoint(ckpt, seed=seed)
    timings['model_s'] = time.perf_counter() - start
    fresh = ckpt_mtime != osp.getmtime(ckpt)
    print(f"model: {'built' if fresh else 'up to date'} ({ckpt}, "
          f'{osp.getsize(ckpt) / 2**20:.1f} MiB)')

    summary = dict(
        data_root=data['root'], ann_files=data['ann_files'],
        labels_file=data['labels_file'], classes=data['classes'],
        train_counts=data['train_counts'],
        text_dir=osp.abspath(text_dir),
        text_labels_file=osp.join(osp.abspath(text_dir), 'labels.txt'),
        wiki_dir=osp.join(osp.abspath(text_dir), 'wiki'),
        text=text, model_name=demo_clip.DEMO_MODEL_NAME,
        checkpoint=osp.abspath(ckpt),
        embed_dim=demo_clip.DEMO_EMBED_DIM,
        image_size=demo_clip.DEMO_IMAGE_SIZE,
        context_length=demo_clip.DEMO_CONTEXT_LENGTH,
        mean=list(demo_clip.DEMO_MEAN), std=list(demo_clip.DEMO_STD),
        seed=seed, timings=timings)
    with atomic_write(osp.join(out_dir, 'demo_assets.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    return summary


def find_lists(data_root: str) -> Dict[str, str]:
    """The ``*_train.txt``, ``*_val.txt`` and ``*_test.txt`` list files of
    a data root (exactly one each), split -> absolute path."""
    found = {}
    for split in ('train', 'val', 'test'):
        hits = sorted(glob.glob(osp.join(data_root, f'*_{split}.txt')))
        if len(hits) != 1:
            raise FileNotFoundError(
                f'{data_root}: expected exactly one *_{split}.txt list file '
                f'(ImageNet-LT format), found {len(hits)}: {hits}; pass '
                f'--{split}-list instead')
        found[split] = osp.abspath(hits[0])
    return found


def prepare_custom(data_root: str, text_dir: str, out_dir: str,
                   ann_files: Optional[Dict[str, str]] = None,
                   seed: int = 0) -> Dict:
    """Describe a user's long-tailed dataset and build the demo model.

    Args:
        data_root (str): Folder with ``labels.txt``, the images and the
            ``*_{train,val,test}.txt`` lists (``relative/path label``).
        text_dir (str): Class text: ``labels.txt`` + ``wiki/desc_{i}.txt``.
        out_dir (str): Where the demo CLIP checkpoint goes.
        ann_files (dict, optional): split -> list file, overriding the
            search. Defaults to None.
        seed (int): Seed of the demo model's projections. Defaults to 0.

    Returns:
        dict: The same keys as :func:`prepare_demo`'s summary.
    """
    from vlltr_mm.datasets.annotation_io import (
        count_classes_from_file,
        read_class_names,
    )
    from vlltr_mm.demo import demo_clip
    lists = find_lists(data_root) if not ann_files else {}
    lists.update({k: osp.abspath(v) for k, v in (ann_files or {}).items()})
    classes = read_class_names(osp.join(data_root, 'labels.txt'))
    counts = count_classes_from_file(lists['train'], len(classes))
    empty = [classes[c] for c in np.flatnonzero(counts == 0)]
    if empty:
        warnings.warn(f"{lists['train']}: no training image for {empty}")
    text = check_demo_text(text_dir, classes)
    os.makedirs(out_dir, exist_ok=True)
    ckpt = osp.join(out_dir, 'demo_clip.pth')
    demo_clip.build_demo_clip_checkpoint(ckpt, seed=seed)
    text_dir = osp.abspath(text_dir)
    return dict(
        data_root=osp.abspath(data_root), ann_files=lists,
        labels_file=osp.join(osp.abspath(data_root), 'labels.txt'),
        classes=classes, train_counts=counts.tolist(), text_dir=text_dir,
        text_labels_file=osp.join(text_dir, 'labels.txt'),
        wiki_dir=osp.join(text_dir, 'wiki'), text=text,
        model_name=demo_clip.DEMO_MODEL_NAME, checkpoint=osp.abspath(ckpt),
        seed=seed)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Prepare data, text check and model of the CPU demo.')
    parser.add_argument('out_dir', nargs='?', default='data/demo',
                        help='output folder (default: data/demo)')
    parser.add_argument('--text-dir', default=DEMO_TEXT_DIR)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--no-download', action='store_true',
                        help='never use the network for Fashion-MNIST')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    prepare_demo(args.out_dir, args.text_dir, seed=args.seed,
                 download=not args.no_download)


if __name__ == '__main__':
    main()
