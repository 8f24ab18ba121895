"""Bad data and text inputs end in a named error or a correct run."""
import io
import os
import stat

import numpy as np
import pytest
from mmpretrain.registry import DATASETS
from PIL import Image

import vlltr_mm  # noqa: F401
from vlltr_mm.datasets import LongTailListDataset
from vlltr_mm.datasets.annotation_io import (
    read_class_names,
    read_list_annotations,
)
from vlltr_mm.datasets.class_text import ClassTextCorpus
from vlltr_mm.datasets.long_tail_list_dataset import SampleLoadError

BOM = b'\xef\xbb\xbf'
PIPELINE = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]


def png_bytes(value=0):
    buf = io.BytesIO()
    Image.fromarray(np.full((6, 8, 3), value, np.uint8)).save(buf, 'PNG')
    return buf.getvalue()


def make_images(root):
    """Class folders a/ and b/: two good PNGs, a zero-byte and a truncated
    one, listed on lines 1-4 (the bad ones on lines 3 and 4)."""
    for d in ('a', 'b'):
        (root / d).mkdir()
    (root / 'a' / 'good.png').write_bytes(png_bytes(10))
    (root / 'b' / 'good.png').write_bytes(png_bytes(20))
    (root / 'a' / 'zero.png').write_bytes(b'')
    (root / 'b' / 'cut.png').write_bytes(png_bytes(30)[:40])
    (root / 'list.txt').write_text(
        'a/good.png 0\nb/good.png 1\na/zero.png 0\nb/cut.png 1\n')
    return 'list.txt'


def build(root, **cfg):
    return DATASETS.build(dict(type='LongTailListDataset',
                               data_root=str(root), **cfg))


def test_labels_file_bom_encoding_and_repeats(tmp_path):
    labels = tmp_path / 'labels.txt'
    labels.write_bytes(BOM + b'tench\ngoldfish\n')
    assert read_class_names(str(labels)) == ['tench', 'goldfish']
    # the corpus reads the same file with the same reader
    corpus = ClassTextCorpus(labels_file=str(labels), templates='simple')
    assert corpus.class_names == ['tench', 'goldfish']
    labels.write_text('tench\ngoldfish\n\ntench\n')
    with pytest.raises(ValueError, match=r"labels\.txt:4: class name "
                       "'tench' repeats line 1"):
        ClassTextCorpus(labels_file=str(labels), templates='simple')
    labels.write_bytes('tench\ncaf\xe9\n'.encode('latin-1'))
    with pytest.raises(UnicodeError, match=r'labels\.txt:2: byte 0xe9 at '
                       'column 4 is not UTF-8; save the file as UTF-8'):
        read_class_names(str(labels))


def test_list_file_label_encoding_and_bom(tmp_path):
    lst = tmp_path / 'list.txt'
    lst.write_text('a/x.png 0\nb/y.png 12345678901234567890\n')
    with pytest.raises(ValueError, match=r'list\.txt:2: label '
                       '12345678901234567890 is too large'):
        read_list_annotations(str(lst))
    lst.write_bytes('a/x.png 0\n\nb/\xe9t\xe9.png 1\n'.encode('latin-1'))
    with pytest.raises(UnicodeError, match=r'list\.txt:3: .*save the file '
                       'as UTF-8'):
        read_list_annotations(str(lst))
    # a BOM is not part of the first image path
    (tmp_path / 'a').mkdir()
    (tmp_path / 'a' / 'x.png').write_bytes(png_bytes())
    lst.write_bytes(BOM + b'a/x.png 0\n')
    ds = build(tmp_path, ann_file='list.txt')
    assert ds.get_data_info(0)['img_path'] == str(tmp_path / 'a' / 'x.png')


def test_verify_images_names_every_bad_line(tmp_path):
    ann = make_images(tmp_path)
    with pytest.raises(ValueError) as info:
        build(tmp_path, ann_file=ann, verify_images=True, pipeline=PIPELINE)
    msg = str(info.value)
    assert '2 of 4 listed images cannot be loaded' in msg
    assert f'list.txt:3: {tmp_path}/a/zero.png is empty (0 bytes)' in msg
    assert (f'list.txt:4: {tmp_path}/b/cut.png cannot be decoded '
            '(truncated or not an image)') in msg


def test_undecodable_image_at_run_time(tmp_path):
    ann = make_images(tmp_path)
    ds = build(tmp_path, ann_file=ann, pipeline=PIPELINE, test_mode=True)
    assert ds[0]['inputs'].shape == (3, 6, 8)
    for idx, line, name, why in [
            (2, 3, 'a/zero.png', r'is empty \(0 bytes\)'),
            (3, 4, 'b/cut.png', 'cannot be decoded')]:
        with pytest.raises(SampleLoadError, match=rf"list\.txt:{line}: "
                           rf"cannot load image '{tmp_path}/{name}' \({why}"
                           r'.*check_images\.py'):
            ds[idx]


def test_zero_image_class_is_named(tmp_path):
    (tmp_path / 'a').mkdir()
    (tmp_path / 'a' / 'x.png').write_bytes(png_bytes())
    (tmp_path / 'a' / 'y.png').write_bytes(png_bytes())
    (tmp_path / 'list.txt').write_text('a/x.png 0\na/y.png 2\n')
    with pytest.warns(UserWarning, match=r"list\.txt: 1 of 3 classes have "
                      r"no image in this split: 1 'goldfish'"):
        ds = build(tmp_path, ann_file='list.txt',
                   classes=['tench', 'goldfish', 'shark'])
    assert ds.class_counts.tolist() == [1, 0, 1]
    assert isinstance(ds, LongTailListDataset)


def test_corpus_cache_mode_unwritable_dir_and_progress(tmp_path, capsys):
    names = ['tabby cat', 'sea otter']
    old = os.umask(0o022)
    try:
        corpus = ClassTextCorpus(class_names=names, templates='simple',
                                 cache_dir=str(tmp_path / 'cache'))
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(corpus.cache_file).st_mode) == 0o644
    assert os.listdir(tmp_path / 'cache') == [
        os.path.basename(corpus.cache_file)]  # no nltk_data written
    out = capsys.readouterr().out
    assert 'splitting the descriptions of 2 classes' in out
    assert 'tokenising 14 sentences' in out and '14/14' in out
    assert out.endswith('\n')  # the bar ends its line
    # an unwritable cache folder is named with the config key to change
    if os.geteuid() == 0:  # root writes anywhere: a file blocks the path
        (tmp_path / 'ro').write_text('')
        bad = tmp_path / 'ro' / 'cache'
    else:
        (tmp_path / 'ro').mkdir(mode=0o555)
        bad = tmp_path / 'ro'
    with pytest.raises(PermissionError, match=rf"cache_dir '{bad}'.*set the"
                       ' `cache_dir` key of the ClassTextCorpus config'):
        ClassTextCorpus(class_names=names, templates='simple',
                        cache_dir=str(bad))
    # a read-only folder that holds the cache still serves it
    again = ClassTextCorpus(class_names=names, templates='simple',
                            cache_dir=str(tmp_path / 'cache'))
    assert again.from_cache and again.sentences == corpus.sentences
