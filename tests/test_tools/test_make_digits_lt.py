import filecmp
import importlib.util
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from vlltr_mm.datasets import LongTailListDataset
from vlltr_mm.datasets.annotation_io import read_list_annotations
from vlltr_mm.datasets.class_text import ClassTextCorpus
from vlltr_mm.demo import demo_clip as dc

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'data', 'make_digits_lt.py')
PREPARE = osp.join(REPO, 'tools', 'demo', 'prepare_demo.py')
TEXT_DIR = osp.join(REPO, 'configs', 'vlltr', 'demo_text_digits')
NAMES = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven',
         'eight', 'nine']
PROFILE = [140, 90, 58, 38, 24, 15, 10, 6, 4, 2]
#: Images per class in ``sklearn.datasets.load_digits``.
SOURCE_SIZES = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_module('make_digits_lt', SCRIPT)


@pytest.fixture(scope='module')
def source():
    images, labels, _ = tool.load_digits_arrays()
    return images, labels


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('digits') / 'lt')
    start = time.perf_counter()
    info = tool.make_digits_lt(out)
    info['seconds'] = time.perf_counter() - start
    return info


def source_index(rel):
    return int(osp.splitext(osp.basename(rel))[0])


def test_long_tail_counts_shared():
    # Imported from make_fashion_mnist_lt.py, not a copy.
    assert tool.long_tail_counts.__module__ == 'make_fashion_mnist_lt'
    assert tool.long_tail_counts(10, 140, 50) == PROFILE


def test_layout_counts_and_pixels(built, source):
    images, source_labels = source
    root = built['root']
    assert built['built'] and built['seconds'] < 10
    assert built['source'].startswith('sklearn.datasets.load_digits')
    assert built['class_sizes'] == SOURCE_SIZES
    assert sorted(os.listdir(root)) == [
        'DigitsLT_test.txt', 'DigitsLT_train.txt', 'DigitsLT_val.txt',
        'labels.txt', 'meta.json', 'test', 'train', 'val']
    with open(osp.join(root, 'labels.txt')) as f:
        assert f.read().split('\n')[:-1] == built['classes'] == NAMES
    # class_order[i] is the label that gets the i-th profile count.
    order = built['class_order']
    assert sorted(order) == list(range(10))
    assert [built['train_counts'][c] for c in order] == PROFILE
    per_split = dict(train=built['train_counts'], val=[10] * 10,
                     test=[20] * 10)
    used = {}
    for split, counts in per_split.items():
        records = read_list_annotations(built['ann_files'][split])
        labels = np.array([r[1] for r in records])
        np.testing.assert_array_equal(np.bincount(labels, minlength=10),
                                      counts)
        idx = np.array([source_index(r[0]) for r in records])
        assert len(set(idx)) == len(idx)
        used[split] = set(idx)
        # Each list line names the source image it copies and its label.
        np.testing.assert_array_equal(source_labels[idx], labels)
        for rel, label, _ in records[::17]:
            assert rel.startswith(f'{split}/{NAMES[label]}/')
            with Image.open(osp.join(root, rel)) as img:
                assert img.mode == 'L' and img.size == (28, 28)
                pixels = np.asarray(img)
            np.testing.assert_array_equal(
                pixels, np.asarray(tool.to_image(
                    images[source_index(rel)], 28)))
            # White digit on black: mostly dark, bright strokes.
            assert pixels.mean() < 128 and pixels.max() > 200
    assert not used['train'] & used['val']
    assert not used['train'] & used['test']
    assert not used['val'] & used['test']


def test_native_size_keeps_values(tmp_path, source):
    images, _ = source
    info = tool.make_digits_lt(str(tmp_path / 'd'), n_max=12,
                               imb_factor=4, val_per_class=2,
                               test_per_class=3, size=8)
    assert [info['train_counts'][c] for c in info['class_order']] == \
        tool.long_tail_counts(10, 12, 4)
    rel = read_list_annotations(info['ann_files']['test'])[0][0]
    with Image.open(osp.join(info['root'], rel)) as img:
        assert img.size == (8, 8)
        np.testing.assert_array_equal(
            np.asarray(img),
            np.rint(images[source_index(rel)] * 255 / 16).astype(np.uint8))


def test_lists_load_as_dataset(built):
    ds = LongTailListDataset(
        ann_file='DigitsLT_train.txt', data_root=built['root'],
        classes='labels.txt')
    assert ds.CLASSES == tuple(NAMES)
    np.testing.assert_array_equal(ds.class_counts, built['train_counts'])


def test_deterministic_for_seed(built, tmp_path):
    same = tool.make_digits_lt(str(tmp_path / 'same'))
    other = tool.make_digits_lt(str(tmp_path / 'other'), seed=1)
    lists = ['DigitsLT_train.txt', 'DigitsLT_val.txt', 'DigitsLT_test.txt',
             'labels.txt']
    rels = [r[0] for r in read_list_annotations(
        built['ann_files']['train'])][::20]
    _, mismatch, errors = filecmp.cmpfiles(
        built['root'], same['root'], lists + rels, shallow=False)
    assert mismatch == [] and errors == []
    assert same['class_order'] == built['class_order']
    assert other['class_order'] != built['class_order']
    _, mismatch, _ = filecmp.cmpfiles(built['root'], other['root'],
                                      lists[:3], shallow=False)
    assert mismatch == lists[:3]


def test_skip_and_rebuild(tmp_path):
    out = str(tmp_path / 'd')
    kwargs = dict(n_max=20, imb_factor=10, val_per_class=2,
                  test_per_class=3, size=12)
    first = tool.make_digits_lt(out, **kwargs)
    assert first['built']
    probe = osp.join(out, read_list_annotations(
        first['ann_files']['train'])[0][0])
    mtime = os.stat(probe).st_mtime_ns
    again = tool.make_digits_lt(out, **kwargs)
    assert not again['built']
    assert os.stat(probe).st_mtime_ns == mtime
    assert again['train_counts'] == first['train_counts']
    # Other arguments: old files are replaced, not mixed with new ones.
    rebuilt = tool.make_digits_lt(out, **dict(kwargs, n_max=10))
    assert rebuilt['built'] and sum(rebuilt['train_counts']) == sum(
        tool.long_tail_counts(10, 10, 10))
    n_files = sum(len(files) for _, _, files in os.walk(
        osp.join(out, 'train')))
    assert n_files == sum(rebuilt['train_counts'])
    with open(osp.join(out, 'meta.json')) as f:
        assert json.load(f)['args']['n_max'] == 10
    # The image size is part of the request too.
    resized = tool.make_digits_lt(out, **dict(kwargs, n_max=10, size=20))
    assert resized['built']
    with Image.open(osp.join(out, read_list_annotations(
            resized['ann_files']['val'])[0][0])) as img:
        assert img.size == (20, 20)


def test_argument_errors(built, tmp_path):
    head = NAMES[built['class_order'][0]]
    with pytest.raises(ValueError, match=(
            f"class '{head}' has {SOURCE_SIZES[NAMES.index(head)]} images "
            r'but needs 170 train \+ 10 val \+ 20 test = 200')):
        tool.make_digits_lt(str(tmp_path / 'x'), n_max=170)
    # Large val / test splits fail on the first class, whatever its count.
    first = built['train_counts'][0]
    with pytest.raises(ValueError, match=(
            f"class 'zero' has 178 images but needs {first} train "
            rf'\+ 100 val \+ 80 test = {first + 180}')):
        tool.make_digits_lt(str(tmp_path / 'x'), val_per_class=100,
                            test_per_class=80)
    assert not osp.exists(tmp_path / 'x')  # checked before writing
    with pytest.raises(ValueError, match='at least one image per class'):
        tool.make_digits_lt(str(tmp_path / 'x'), n_max=20, imb_factor=50)
    (tmp_path / 'foreign' / 'train').mkdir(parents=True)
    with pytest.raises(FileExistsError, match='no meta.json'):
        tool.make_digits_lt(str(tmp_path / 'foreign'))


def test_cli(built, tmp_path):
    result = subprocess.run([sys.executable, SCRIPT, built['root']],
                            capture_output=True, text=True, check=True)
    assert 'up to date from sklearn.datasets.load_digits' in result.stdout
    order = built['class_order']
    assert f'{NAMES[order[0]]} 140, ' in result.stdout
    assert f'{NAMES[order[-1]]} 2\n' in result.stdout
    # One summary row per class: train, val, test and source counts.
    for c, name in enumerate(NAMES):
        assert re.search(
            rf'^{name} +{built["train_counts"][c]} +10 +20 +'
            rf'{SOURCE_SIZES[c]}$', result.stdout, flags=re.M)
    fail = subprocess.run(
        [sys.executable, SCRIPT, str(tmp_path / 'big'), '--n-max', '175'],
        capture_output=True, text=True)
    assert fail.returncode != 0
    assert re.search(r"error: class '\w+' has \d+ images but needs 175 "
                     'train', fail.stderr)
    assert not osp.exists(tmp_path / 'big')


def test_digits_text():
    """The digits class text passes the demo check and builds a corpus."""
    with open(osp.join(TEXT_DIR, 'labels.txt')) as f:
        assert f.read().split('\n')[:-1] == NAMES
    for i in range(len(NAMES)):
        with open(osp.join(TEXT_DIR, 'wiki', f'desc_{i}.txt')) as f:
            text = f.read()
        headers = re.findall(r'^== (.+) ==$', text, flags=re.M)
        assert headers == ['Shape', 'History', 'Usage', 'References',
                           'External links']
        assert not text.startswith('==')  # summary first
    info = load_module('prepare_demo', PREPARE).check_demo_text(
        TEXT_DIR, NAMES)
    assert len(info['sentences']) == 10 and min(info['sentences']) >= 14
    assert info['prompts'] == [80] * 10
    assert info['max_tokens'] <= info['context_length'] == 32


def test_digits_corpus(tmp_path):
    corpus = ClassTextCorpus(
        labels_file=osp.join(TEXT_DIR, 'labels.txt'),
        wiki_dir=osp.join(TEXT_DIR, 'wiki'), templates='openai_imagenet',
        tokenizer=dc.DEMO_MODEL_NAME, context_length=dc.DEMO_CONTEXT_LENGTH,
        cache_dir=str(tmp_path / 'cache'))
    assert corpus.num_classes == 10 and corpus.class_names == NAMES
    assert corpus.num_truncated == 0 and corpus.prompt_only_classes == []
    text = ' '.join(corpus.sentences)
    # Reference sections are dropped; visual and off-topic text is kept.
    assert 'Example' not in text and 'portal' not in text
    assert 'crossbar' in text and 'casting out nines' in text
