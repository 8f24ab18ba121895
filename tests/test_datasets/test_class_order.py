"""The class text must name the dataset's classes in the dataset's order;
count mismatches name both files."""
import numpy as np
import pytest
from mmpretrain.registry import DATASETS
from PIL import Image

import vlltr_mm  # noqa: F401
from vlltr_mm.datasets.class_text.class_order import check_class_order

NAMES = ['cat', 'dog', 'bird', 'fish']


def test_same_names_pass_spelling_aside():
    check_class_order(NAMES, 'A', NAMES, 'B')
    check_class_order(['sea_otter', 'Cat'], 'A', ['Sea otter', 'cat'], 'B')


def test_count_and_order():
    with pytest.raises(ValueError, match=r'^B has 3 classes but A has 4;'):
        check_class_order(NAMES, 'A', NAMES[:3], 'B')
    swapped = ['dog', 'cat', 'bird', 'fish']
    with pytest.raises(ValueError, match=(
            r"order the classes differently: 'dog' is class 0 in B but class "
            r"1 in A, 'cat' is class 1 in B but class 0 in A \(2 of 4 "
            r'classes at another position\)(.|\n)*--labels-file lab\.txt')):
        check_class_order(NAMES, 'A', swapped, 'B', expected_file='lab.txt')
    # a moved name is an error even when the others differ in spelling
    with pytest.raises(ValueError, match="'bird' is class 0 in B"):
        check_class_order(NAMES, 'A', ['bird', 'x', 'y', 'z'], 'B')


def test_other_naming_scheme_warns():
    wnids = ['n01', 'n02', 'n03', 'n04']
    with pytest.warns(UserWarning, match=(
            r"4 of 4 class names differ between A and B \(class 0 is 'cat' "
            r"in A but 'n01' in B")):
        check_class_order(NAMES, 'A', wnids, 'B')


@pytest.fixture
def data(tmp_path):
    """A list split with labels.txt, and the class text's labels.txt."""
    (tmp_path / 'img').mkdir()
    lines = []
    for label in range(len(NAMES)):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(
            tmp_path / 'img' / f'{label}.png')
        lines.append(f'img/{label}.png {label}\n')
    (tmp_path / 'train.txt').write_text(''.join(lines))
    (tmp_path / 'labels.txt').write_text('\n'.join(NAMES) + '\n')
    (tmp_path / 'text').mkdir()
    return tmp_path


def wrapper(root, corpus_names, **dataset):
    labels = root / 'text' / 'labels.txt'
    labels.write_text('\n'.join(corpus_names) + '\n')
    return dict(
        type='ClassTextDataset',
        dataset=dict(type='LongTailListDataset', data_root=str(root),
                     ann_file='train.txt', classes='labels.txt', **dataset),
        corpus=dict(type='ClassTextCorpus', labels_file=str(labels),
                    templates='simple'))


def test_swapped_corpus_is_refused(data):
    """The reported case: two names swapped in the corpus's labels.txt."""
    corpus = data / 'text' / 'labels.txt'
    with pytest.raises(ValueError, match=(
            rf"the corpus \({corpus}\) and the dataset \({data}/labels\.txt"
            rf"\) order the classes differently: 'bird' is class 1 in the "
            rf'corpus \({corpus}\) but class 2 in the dataset(.|\n)*'
            rf'--labels-file {data}/labels\.txt')), pytest.warns(
                UserWarning, match='prompts only'):
        DATASETS.build(wrapper(data, ['cat', 'bird', 'dog', 'fish']))
    with pytest.warns(UserWarning, match='prompts only'):
        ds = DATASETS.build(wrapper(data, NAMES))
    assert ds.corpus.class_names == NAMES


def test_counts_name_both_files(data):
    corpus = data / 'text' / 'labels.txt'
    with pytest.raises(ValueError, match=(
            rf'the corpus \({corpus}\) has 3 classes but the dataset '
            rf'\({data}/labels\.txt\) has 4')), pytest.warns(UserWarning):
        DATASETS.build(wrapper(data, NAMES[:3]))
    # labels.txt against num_classes: the labels file is named
    with pytest.raises(ValueError, match=(
            r'train\.txt: inconsistent number of classes: num_classes=3, '
            rf'class names in {data}/labels\.txt=4')):
        DATASETS.build(wrapper(data, NAMES, num_classes=3)['dataset'])
