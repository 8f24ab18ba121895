"""tools/data/inat2018_labels.py on JSON files in iNat 2018's format."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from vlltr_mm.datasets import INaturalist2018
from vlltr_mm.datasets.annotation_io import read_class_names

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TAXA = ('kingdom', 'phylum', 'class', 'order', 'family', 'genus')


def category(cid, name, *taxa):
    return dict(id=cid, name=name, supercategory=taxa[0],
                **dict(zip(TAXA, taxa)))


#: Listed out of id order on purpose; two species share a name.
CATEGORIES = [
    category(2, 'Aotus', 'Plantae', 'Tracheophyta', 'Magnoliopsida',
             'Fabales', 'Fabaceae', 'Aotus'),
    category(0, 'Xanthoria parietina', 'Fungi', 'Ascomycota',
             'Lecanoromycetes', 'Teloschistales', 'Teloschistaceae',
             'Xanthoria'),
    category(5, 'Aotus', 'Animalia', 'Chordata', 'Mammalia', 'Primates',
             'Aotidae', 'Aotus'),
    category(3, 'Pica pica', 'Animalia', 'Chordata', 'Aves',
             'Passeriformes', 'Corvidae', 'Pica'),
]


def write_json(path, data):
    path.write_text(json.dumps(data, indent=1))
    return str(path)


def annotation(ids):
    """An annotation file with one image per category id, names hidden."""
    return dict(
        images=[dict(id=i, file_name=f'train_val2018/x/{c}/{i}.jpg')
                for i, c in enumerate(ids)],
        annotations=[dict(id=i, image_id=i, category_id=c)
                     for i, c in enumerate(ids)],
        categories=[dict(id=c, name=f'obfuscated {c}') for c in ids])


@pytest.fixture
def tool(load_tool):
    return load_tool('tools/data/inat2018_labels.py')


def test_names_in_label_order(tool, tmp_path):
    cat = write_json(tmp_path / 'categories.json', CATEGORIES)
    names, ids, notes = tool.inat_class_names(cat)
    assert ids.tolist() == [0, 2, 3, 5]
    assert names == ['Xanthoria parietina', 'Aotus (Plantae)', 'Pica pica',
                     'Aotus (Animalia)']
    assert notes[0].startswith(f'warning: {cat} does not list its ids in '
                               'increasing order')
    assert notes[1] == ("renamed: 2 categories named 'Aotus' now carry "
                        "their kingdom: 'Aotus (Plantae)', 'Aotus "
                        "(Animalia)'")
    # Label i of the dataset (which reads categories.json itself) is the
    # species that line i names.
    ann = write_json(tmp_path / 'train2018.json', annotation([5, 0, 3, 2]))
    dataset = INaturalist2018(ann_file=ann, classes=cat, check_files=False)
    assert list(dataset.CLASSES) == [
        'Xanthoria parietina', 'Aotus', 'Pica pica', 'Aotus']
    assert dataset.get_gt_labels().tolist() == [3, 0, 2, 1]


def test_rank_that_tells_apart(tool, tmp_path):
    # Same kingdom to class: the order is the broadest rank that differs.
    cats = [category(0, 'Aus bus', 'Animalia', 'Chordata', 'Aves', 'Ord1',
                     'Fam1', 'Aus'),
            category(1, 'Aus bus', 'Animalia', 'Chordata', 'Aves', 'Ord2',
                     'Fam2', 'Aus')]
    names, _, _ = tool.inat_class_names(
        write_json(tmp_path / 'c.json', cats))
    assert names == ['Aus bus (Ord1)', 'Aus bus (Ord2)']
    cats[1] = dict(cats[0], id=1)
    with pytest.raises(ValueError, match=r"ids \[0, 1\] are all named "
                       "'Aus bus' and no rank"):
        tool.inat_class_names(write_json(tmp_path / 'c.json', cats))


def test_annotation_ids(tool, tmp_path, capsys):
    cat = write_json(tmp_path / 'categories.json', CATEGORIES)
    out = tmp_path / 'labels.txt'
    same = write_json(tmp_path / 'val2018.json', annotation([0, 2, 3, 5]))
    assert tool.main([cat, '--ann', same, '--out', str(out)]) == 0
    assert f'checked: {same} uses the same 4 category ids' in (
        capsys.readouterr().out)
    assert read_class_names(str(out))[1] == 'Aotus (Plantae)'
    other = write_json(tmp_path / 'other.json', annotation([0, 2, 3, 7]))
    assert tool.main([cat, '--ann', other, '--out', str(out)]) == 1
    assert ('other.json: its 4 category ids differ from the 4 of the '
            'categories file (only here: [7]; only there: [5])') in (
                capsys.readouterr().err)
    broken = tmp_path / 'broken.json'
    broken.write_text('[\n{"id": 0, "name": "a"},\n{"id": 1}\n]')
    assert tool.main([str(broken), '--out', str(out)]) == 1
    assert "broken.json: categories[1] has no 'name'" in (
        capsys.readouterr().err)


def test_cli(tmp_path):
    cat = write_json(tmp_path / 'categories.json', CATEGORIES[1:2])
    result = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/data/inat2018_labels.py'),
         cat], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        'wrote: data/text/inat2018/labels.txt (1 class names)\n')
    assert (tmp_path / 'data/text/inat2018/labels.txt').read_text() == (
        'Xanthoria parietina\n')
