"""tools/data/check_data_root.py on real tiny roots, good and broken."""
import json
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'data', 'check_data_root.py')

#: A config shaped like the shipped stage configs: a ClassTextDataset
#: wrapper, a corpus in several places, evaluators reading the train list.
CONFIG = '''
data_root = {data!r}
text_root = {text!r}
corpus = dict(type='ClassTextCorpus', labels_file=f'{{text_root}}/labels.txt',
              wiki_dir=f'{{text_root}}/wiki', templates='simple')
pipeline = [dict(type='LoadImageFromFile', imdecode_backend='pillow')]
ds = dict(type='LongTailListDataset', data_root=data_root, num_classes=6,
          classes='labels.txt', pipeline=pipeline)
train_dataloader = dict(dataset=dict(
    type='ClassTextDataset', corpus=corpus,
    dataset=dict(ds, ann_file='ImageNet_LT_train.txt')))
val_dataloader = dict(dataset=dict(ds, ann_file='ImageNet_LT_val.txt'))
test_dataloader = dict(dataset=dict(ds, ann_file='ImageNet_LT_test.txt'))
val_evaluator = dict(type='LongTailAccuracy', num_classes=6,
                     train_ann_file=f'{{data_root}}/ImageNet_LT_train.txt')
test_evaluator = val_evaluator
model = dict(corpus=corpus)
custom_hooks = [dict(type='AnchorSentenceSelectionHook', corpus=corpus)]
'''


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """Tiny ImageNet-LT-format images and a text root for 5 of 6 classes."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'make_tiny_lt', osp.join(REPO, 'tools', 'data', 'make_tiny_lt.py'))
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)
    root = tmp_path_factory.mktemp('roots')
    maker.make_tiny_lt(str(root / 'data'), counts=[6, 5, 4, 3, 2, 2],
                       val_per_class=1, test_per_class=1)
    (root / 'text' / 'wiki').mkdir(parents=True)
    shutil.copy(root / 'data' / 'labels.txt', root / 'text' / 'labels.txt')
    for i in range(5):
        (root / 'text' / 'wiki' / f'desc_{i}.txt').write_text(
            f'Class {i} shows stripes of one colour.\n')
    return root


def copy_root(tiny, tmp_path):
    shutil.copytree(tiny / 'data', tmp_path / 'data')
    shutil.copytree(tiny / 'text', tmp_path / 'text')
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(CONFIG.format(data=str(tmp_path / 'data'),
                                 text=str(tmp_path / 'text')))
    return tmp_path / 'data', tmp_path / 'text', str(cfg)


@pytest.fixture
def tool(load_tool):
    return load_tool('tools/data/check_data_root.py')


def run(tool, capsys, *args):
    rc = tool.main([*args, '--workers', '1', '--no-progress'])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_good_root(tool, tiny, tmp_path, capsys):
    data, text, cfg = copy_root(tiny, tmp_path)
    rc, out, _ = run(tool, capsys, cfg)
    assert rc == 0, out
    lines = out.split('\n')
    assert lines[:6] == [
        f'ok: train: {data}/ImageNet_LT_train.txt: 22 images, 6 classes '
        '(6 .. 2 images per class)',
        'ok: train: all 22 listed images decode',
        f'ok: val: {data}/ImageNet_LT_val.txt: 6 images, 6 classes (1 .. 1 '
        'images per class)',
        'ok: val: all 6 listed images decode',
        f'ok: test: {data}/ImageNet_LT_test.txt: 6 images, 6 classes (1 .. '
        '1 images per class)',
        'ok: test: all 6 listed images decode']
    assert lines[6] == ('ok: val_evaluator: many / medium / few split from '
                        f'{data}/ImageNet_LT_train.txt')
    # One corpus, though the config holds it three times.
    assert lines[7:] == [
        f'warning: class text: 1 of 6 classes have no description in '
        f"wiki_dir={text}/wiki and fall back to the prompts alone: 5 "
        "'cyan_diagonal'",
        f'0 problem(s), 1 warning(s) in the data of {cfg}', '']


def test_broken_root(tool, tiny, tmp_path, capsys):
    data, text, cfg = copy_root(tiny, tmp_path)
    (data / 'train' / 'red_horizontal' / '00002.png').unlink()
    cut = data / 'test' / 'blue_vertical' / '00000.png'
    cut.write_bytes(cut.read_bytes()[:40])
    with open(data / 'ImageNet_LT_val.txt', 'a') as f:
        f.write('val/red_horizontal/00000.png 9\n')
    names = (text / 'labels.txt').read_text().split('\n')
    names[:2] = names[1::-1]
    (text / 'labels.txt').write_text('\n'.join(names))
    (text / 'wiki' / 'desc_6.txt').write_text('Text of a seventh class.\n')
    rc, out, err = run(tool, capsys, cfg)
    assert rc == 1
    train_list, test_list = (data / 'ImageNet_LT_train.txt',
                             data / 'ImageNet_LT_test.txt')
    line = train_list.read_text().split('\n').index(
        'train/red_horizontal/00002.png 0') + 1
    assert (f'error: train: 1 of 22 listed images cannot be loaded (1 '
            f'missing; images under {data}/); replace the files or remove '
            f'their lines:\n  {train_list}:{line}: '
            f'{data}/train/red_horizontal/00002.png does not exist\n') in out
    assert (f'error: val: {data}/ImageNet_LT_val.txt:7: label 9 >= '
            'num_classes (6)') in out
    line = test_list.read_text().split('\n').index(
        'test/blue_vertical/00000.png 2') + 1
    assert f'{test_list}:{line}: {cut} cannot be decoded' in out
    assert ("error: class text: the class text (" + str(text / 'labels.txt')
            + ') and the dataset (' + str(data / 'labels.txt') + ') order the '
            "classes differently: 'green_diagonal' is class 0") in out
    assert '4 problem(s), 0 warning(s)' in err
    # Images are not decoded with --skip-images; the missing one still counts.
    rc, out, _ = run(tool, capsys, cfg, '--skip-images')
    assert rc == 1 and 'cannot be decoded' not in out
    assert 'ok: test: all 6 listed images exist (not decoded' in out


def test_inat_root(tool, tmp_path, capsys, load_tool):
    """iNat JSON files, categories.json, and text labels written by
    inat2018_labels.py (a renamed species only warns)."""
    img = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    ids, images = [4, 1, 4], []
    for i, cid in enumerate(ids):
        name = f'train_val2018/Plantae/{cid}/{i}.jpg'
        (tmp_path / osp.dirname(name)).mkdir(parents=True, exist_ok=True)
        img.save(tmp_path / name)
        images.append(dict(id=i, file_name=name))
    ann = dict(images=images, categories=[dict(id=c, name=str(c))
                                          for c in (1, 4)],
               annotations=[dict(id=i, image_id=i, category_id=c)
                            for i, c in enumerate(ids)])
    (tmp_path / 'train2018.json').write_text(json.dumps(ann))
    (tmp_path / 'categories.json').write_text(json.dumps([
        dict(id=4, name='Aotus', kingdom='Animalia'),
        dict(id=1, name='Aotus', kingdom='Plantae')]))
    labels = load_tool('tools/data/inat2018_labels.py')
    text = tmp_path / 'text'
    assert labels.main([str(tmp_path / 'categories.json'), '--out',
                        str(text / 'labels.txt')]) == 0
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        f'data_root = {str(tmp_path)!r}\n'
        "ds = dict(type='INaturalist2018', data_root=data_root, "
        "classes='categories.json', ann_file='train2018.json')\n"
        'train_dataloader = dict(dataset=ds)\n'
        'val_dataloader = train_dataloader\n'
        "corpus = dict(type='ClassTextCorpus', "
        f"labels_file={str(text / 'labels.txt')!r})\n")
    capsys.readouterr()
    rc, out, _ = run(tool, capsys, str(cfg))
    assert rc == 0, out
    assert (f'ok: train: {tmp_path}/train2018.json: 3 images, 2 classes (2 '
            '.. 1 images per class)') in out
    assert 'ok: val: the same dataset as train, checked above' in out
    assert ("class 0 is 'Aotus' in the dataset (" + str(
        tmp_path / 'categories.json') + ") but 'Aotus (Plantae)' in the "
            'class text') in out
    assert 'no wiki_dir, json_file or text_dir' in out


def test_shipped_config_moved_by_data_root(tiny):
    """The user path: a shipped config, its roots moved with --cfg-options,
    pointing at data of another class count; and a config that fails."""
    result = subprocess.run(
        [sys.executable, SCRIPT, 'configs/vlltr/cvlp_r50_imagenet-lt.py',
         '--skip-images', '--cfg-options', f'data_root={tiny}/data',
         f'text_root={tiny}/text'],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert (f'error: train: {tiny}/data/ImageNet_LT_train.txt: inconsistent '
            'number of classes: num_classes=1000') in result.stdout
    assert (f'error: class text: {tiny}/text/labels.txt names 6 classes, the '
            'config has num_classes=1000') in result.stdout
    result = subprocess.run(
        [sys.executable, SCRIPT, 'configs/_base_/default_runtime.py',
         '--cfg-options', 'data_root=/x'],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert ('error: cannot read configs/_base_/default_runtime.py: KeyError'
            ) in result.stderr
