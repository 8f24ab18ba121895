"""tools/data/places_lt_labels.py on category files in Places365's format."""
import os.path as osp
import subprocess
import sys

import pytest

from vlltr_mm.datasets.annotation_io import read_class_names

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: The first lines of the real categories_places365.txt, then made-up ones.
REAL = ['/a/airfield', '/a/airplane_cabin', '/a/airport_terminal',
        '/a/alcove', '/a/alley', '/a/amphitheater', '/a/amusement_arcade',
        '/a/amusement_park', '/a/apartment_building/outdoor']


def categories(tmp_path, n=365, order=None, rename=None):
    paths = REAL + [f'/s/scene_{i}' for i in range(len(REAL), n)]
    for i, path in (rename or {}).items():
        paths[i] = path
    lines = [f'{paths[i]} {i}' for i in (order or range(n))]
    path = tmp_path / 'categories_places365.txt'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


@pytest.fixture
def tool(load_tool):
    return load_tool('tools/data/places_lt_labels.py')


def test_names_in_index_order(tool, tmp_path):
    # Lines out of order: the index column decides.
    cat = categories(tmp_path, order=list(range(364, -1, -1)))
    read = tool.read_categories(cat)
    assert read[0] == ('a/airfield', 'airfield')
    assert read[1] == ('a/airplane_cabin', 'airplane cabin')
    assert read[8] == ('a/apartment_building/outdoor',
                       'apartment building outdoor')
    assert read[364] == ('s/scene_364', 'scene 364')
    # The reader of the authors' copy of this file gives the same names.
    assert [name for _, name in read] == read_class_names(cat)


@pytest.mark.parametrize('lines, match', [
    (['/a/airfield 0', 'airplane_cabin 1'],
     r':2: expected "/x/scene index" .* got \'airplane_cabin 1\''),
    (['/a/airfield 0', '/a/alcove 0'], r':2: index 0 repeats line 1'),
    (['/a/airfield 0', '', '/a/airfield 1'],
     r':3: /a/airfield repeats line 1'),
    (['/a/airfield 0', '/a/alcove 2'],
     r'has 2 categories; expected indices 0..1 each once \(missing: \[1\], '
     r'out of range: \[2\]\)'),
])
def test_refuses_bad_files(tool, tmp_path, lines, match):
    path = tmp_path / 'cat.txt'
    path.write_text('\n'.join(lines) + '\n')
    with pytest.raises(ValueError, match=match):
        tool.read_categories(str(path), num_classes=2)


def test_list_labels_against_scene_folders(tool, tmp_path):
    paths = [p for p, _ in tool.read_categories(categories(tmp_path))]
    good = tmp_path / 'Places_LT_train.txt'
    good.write_text('data_256/a/airfield/00000001.jpg 0\n'
                    'train/apartment_building/outdoor/00000002.jpg 8\n'
                    '/a/alcove/00000003.jpg 3\n'
                    'val_256/Places365_val_00000001.jpg 5\n')
    assert tool.check_list_labels(str(good), paths) == (
        f'checked: {good}: 3 labels match their scene folders, 1 outside '
        'scene folders skipped')
    bad = tmp_path / 'bad.txt'
    bad.write_text('data_256/a/airfield/1.jpg 0\ndata_256/a/alley/2.jpg 3\n')
    with pytest.raises(ValueError, match=r'bad.txt:2: data_256/a/alley/2.jpg '
                       r'lies in the folder of class 4 \(/a/alley\) but is '
                       'labelled 3'):
        tool.check_list_labels(str(bad), paths)


def test_names_that_collide(tool, tmp_path, capsys):
    cat = categories(tmp_path, rename={9: '/a/arena/hockey',
                                       10: '/a/arena_hockey'})
    out = tmp_path / 'labels.txt'
    assert tool.main([cat, '--out', str(out)]) == 1
    assert "classes 9 and 10 are both named 'arena hockey'" in (
        capsys.readouterr().err)
    assert not out.exists()
    short = tmp_path / 'short.txt'
    short.write_text('/a/airfield 0\n/a/alcove 1\n')
    assert tool.main([str(short), '--out', str(out)]) == 1
    assert 'has 2 categories; expected indices 0..364' in (
        capsys.readouterr().err)


def test_cli(tmp_path):
    cat = categories(tmp_path)
    lst = tmp_path / 'Places_LT_val.txt'
    lst.write_text('data_256/a/alley/1.jpg 4\n')
    result = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/data/places_lt_labels.py'),
         cat, '--list', str(lst)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split('\n')[:3] == [
        f'checked: {lst}: 1 labels match their scene folders',
        'wrote: data/places365/labels.txt (365 class names)',
        'wrote: data/text/places-lt/labels.txt (365 class names)']
    names = read_class_names(str(tmp_path / 'data/places365/labels.txt'))
    assert names[:2] == ['airfield', 'airplane cabin'] and len(names) == 365
