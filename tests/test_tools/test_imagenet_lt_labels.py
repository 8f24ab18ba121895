"""tools/data/imagenet_lt_labels.py: CLIP's 1,000 names, unique, in order."""
import os.path as osp
import subprocess
import sys

import pytest

from vlltr_mm.datasets.annotation_io import read_class_names

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture
def tool(load_tool):
    return load_tool('tools/data/imagenet_lt_labels.py')


def test_names_unique_in_index_order(tool):
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    names = tool.imagenet_class_names()
    assert len(names) == len(set(names)) == 1000
    known = {0: 'tench', 1: 'goldfish', 2: 'great white shark',
             3: 'tiger shark', 134: 'crane bird', 517: 'construction crane',
             657: 'missile', 744: 'projectile', 836: 'sunglass',
             837: 'sunglasses', 999: 'toilet paper'}
    assert {i: names[i] for i in known} == known
    # Only the two repeated OpenAI names changed.
    changed = [i for i, (a, b) in enumerate(zip(names, IMAGENET_CLASSNAMES))
               if a != b]
    assert changed == [744, 836]


def write_list(path, lines):
    path.write_text(''.join(f'{line}\n' for line in lines))
    return str(path)


def test_list_order_check(tool, tmp_path):
    ok = write_list(tmp_path / 'ok.txt', [
        'train/n01440764/n01440764_190.JPEG 0',
        'train/n01443537/n01443537_2.JPEG 1',
        'val/n01440764/ILSVRC2012_val_00000293.JPEG 0',
        'train/n01484850/n01484850_7.JPEG 2', 'flat/x.JPEG 1'])
    assert tool.check_list_order(ok) == (
        f'checked: {ok} labels 3 classes in sorted WordNet-id order, 1 '
        'without a WordNet id skipped')
    bad = {
        'two wnids': (['train/n01440764/a.JPEG 0',
                       'train/n01443537/b.JPEG 0'],
                      r':2: label 0 is n01443537 here but n01440764 on '
                      'line 1'),
        'two labels': (['train/n01440764/a.JPEG 0',
                        'train/n01440764/b.JPEG 1'],
                       r':2: n01440764 is labelled 1 here but 0 elsewhere'),
        'unsorted': (['train/n01443537/a.JPEG 0',
                      'train/n01440764/b.JPEG 1'],
                     r':2: label 1 is n01440764 but label 0 is n01443537 '
                     r'\(line 1\); the labels are not in sorted'),
        'too many': (['train/n01440764/a.JPEG 1000'], r':1: label 1000 >= '),
    }
    for name, (lines, match) in bad.items():
        path = write_list(tmp_path / f'{name}.txt', lines)
        with pytest.raises(ValueError, match=match):
            tool.check_list_order(path)


def test_main_exit_codes(tool, tmp_path, capsys):
    out = tmp_path / 'labels.txt'
    good = write_list(tmp_path / 'l.txt', ['train/n01440764/a.JPEG 0'])
    assert tool.main(['--list', good, '--out', str(out)]) == 0
    assert f'wrote: {out} (1000 class names)' in capsys.readouterr().out
    bad = write_list(tmp_path / 'b.txt', ['train/n01440764/a.JPEG x'])
    assert tool.main(['--list', bad, '--out', str(out)]) == 1
    assert "b.txt:1: label 'x' is not an integer" in capsys.readouterr().err


def tool_outputs():
    return 'data/imagenet/labels.txt', 'data/text/imagenet-lt/labels.txt'


def test_cli_default_outputs(tmp_path):
    """Run as a user would, from a data folder: both configs' paths."""
    result = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/data/imagenet_lt_labels.py')],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for rel in tool_outputs():
        assert f'wrote: {rel} (1000 class names)' in result.stdout
        names = read_class_names(str(tmp_path / rel))
        assert names[:2] == ['tench', 'goldfish'] and len(names) == 1000
