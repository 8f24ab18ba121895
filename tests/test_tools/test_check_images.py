"""tools/data/check_images.py on real good, empty and truncated images."""
import importlib.util
import io
import os.path as osp
import subprocess
import sys

import numpy as np
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(ROOT, 'tools', 'data', 'check_images.py')
_spec = importlib.util.spec_from_file_location('check_images', SCRIPT)
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)


def write_images(root):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buf, 'PNG')
    (root / 'img').mkdir()
    (root / 'img' / 'good.png').write_bytes(buf.getvalue())
    (root / 'img' / 'zero.png').write_bytes(b'')
    (root / 'img' / 'cut.png').write_bytes(buf.getvalue()[:30])


def test_list_file_in_process(tmp_path, capsys):
    write_images(tmp_path)
    good = tmp_path / 'good.txt'
    good.write_text('img/good.png 0\n' * 3)
    assert tool.main([str(good), '--workers', '1', '--no-progress']) == 0
    assert 'all 3 images' in capsys.readouterr().out
    bad = tmp_path / 'bad.txt'
    bad.write_text('img/good.png 0\nimg/zero.png 1\nimg/gone.png 0\n')
    assert tool.main([str(bad), '--workers', '1', '--no-progress']) == 1
    out = capsys.readouterr()
    assert f'bad.txt:2: {tmp_path}/img/zero.png is empty (0 bytes)' in (
        out.out)
    assert f'bad.txt:3: {tmp_path}/img/gone.png cannot be read' in out.out
    assert '2 of 3 images' in out.err
    bad.write_text('img/good.png zero\n')
    assert tool.main([str(bad), '--no-progress']) == 2
    assert "bad.txt:1: label 'zero' is not an integer" in (
        capsys.readouterr().err)


def test_config_split_in_parallel(tmp_path, capsys):
    """The user path: a config, a wrapped dataset, worker processes."""
    write_images(tmp_path)
    # 300 lines: enough for the process pool; the bad ones at 151 and 300.
    lines = ['good.png 0\n'] * 300
    lines[150], lines[299] = 'zero.png 1\n', 'cut.png 0\n'
    (tmp_path / 'train.txt').write_text(''.join(lines))
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        'train_dataloader = dict(dataset=dict(type="ClassTextDataset", '
        'dataset=dict(type="LongTailListDataset", '
        f'data_root={str(tmp_path)!r}, ann_file="train.txt", '
        'data_prefix=dict(img_path="img"), pipeline=[dict('
        'type="LoadImageFromFile", imdecode_backend="pillow")])))\n')
    result = subprocess.run(
        [sys.executable, SCRIPT, str(cfg), '--split', 'train',
         '--workers', '2'], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert f'train.txt:151: {tmp_path}/img/zero.png is empty' in (
        result.stdout)
    assert f'train.txt:300: {tmp_path}/img/cut.png cannot be decoded' in (
        result.stdout)
    assert '300/300' in result.stdout  # MMEngine's progress bar
    assert '2 of 300 images' in result.stderr
    assert tool.main([str(cfg), '--split', 'val']) == 2
    assert 'has no `val_dataloader`' in capsys.readouterr().err


def test_config_with_img_root(tmp_path, capsys):
    """--img-root replaces the config's image folder; the list file stays
    the config's (reported: it was ignored and the config's root checked)."""
    write_images(tmp_path)
    (tmp_path / 'train.txt').write_text('good.png 0\nzero.png 1\n')
    copy = tmp_path / 'copy'
    copy.mkdir()
    (copy / 'good.png').write_bytes((tmp_path / 'img' / 'good.png'
                                     ).read_bytes())
    (copy / 'zero.png').write_bytes((tmp_path / 'img' / 'good.png'
                                     ).read_bytes())
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        'train_dataloader = dict(dataset=dict(type="LongTailListDataset", '
        f'data_root={str(tmp_path)!r}, ann_file="train.txt", '
        'data_prefix="img"))\n')
    assert tool.main([str(cfg), '--workers', '1', '--no-progress']) == 1
    assert f'train.txt:2: {tmp_path}/img/zero.png is empty' in (
        capsys.readouterr().out)
    assert tool.main([str(cfg), '--img-root', str(copy), '--workers', '1',
                      '--no-progress']) == 0
    out = capsys.readouterr().out
    assert f"images under {copy} (--img-root), not the config's " in out
    assert 'all 2 images' in out
