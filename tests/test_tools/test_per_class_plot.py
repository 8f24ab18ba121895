"""tools/analysis/per_class_plot.py: what is drawn, and a real PNG."""
import json
import math
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = 'tools/analysis/per_class_plot.py'
CLASSES = ['a', 'b', 'c', 'd']
COUNTS = [5, 50, 20, 50]


def demo_result(rows):
    """A demo results.json: rows = {method: [per-class list per seed]}."""
    return dict(
        classes=CLASSES, train_counts=COUNTS, methods=[
            dict(method=name, seeds={
                str(s): dict(per_class=pc) for s, pc in enumerate(seeds)
            }) for name, seeds in rows.items()
        ])


def per_class_file(accs, key='accuracy'):
    """The LongTailAccuracy per-class file layout."""
    return dict(group_rule='consistent', classes=[
        dict(index=i, name=n, train_count=c, group=None, eval_count=3,
             **{key: a}) for i, (n, c, a) in enumerate(zip(CLASSES, COUNTS,
                                                           accs))
    ])


def write(path, data):
    path.write_text(json.dumps(data))
    return str(path)


def test_prepare_demo_rows(load_tool):
    tool = load_tool(TOOL)
    result = demo_result({
        'A': [[10, 20, 30, 40], [20, 40, 30, None]],
        'B': [[0, 50, 100, 50]],
    })
    runs = tool.runs_from_result(result)
    assert [r.label for r in runs] == ['A', 'B']
    assert runs[0].seeds.shape == (2, 4) and math.isnan(runs[0].seeds[1, 3])
    prep = tool.prepare(runs)
    # Most images first; the two classes of 50 keep their order.
    assert prep['order'].tolist() == [1, 3, 2, 0]
    assert prep['names'] == ['b', 'd', 'c', 'a']
    assert prep['counts'].tolist() == [50, 50, 20, 5]
    assert prep['seeds'] == [2, 1] and prep['labels'] == ['A', 'B']
    # A: class b 20/40, d 40 (one seed evaluated it), c 30/30, a 10/20.
    np.testing.assert_allclose(prep['mean'][0], [30, 40, 30, 15])
    np.testing.assert_allclose(
        prep['std'][0], [math.sqrt(200), np.nan, 0, math.sqrt(50)])
    np.testing.assert_allclose(prep['mean'][1], [50, 50, 100, 0])
    assert np.isnan(prep['std'][1]).all()
    # Rows picked by name, in the order given.
    assert [r.label for r in tool.runs_from_result(result, ['B', 'A'])] == [
        'B', 'A']
    with pytest.raises(ValueError, match=r"x.json: no row \['C'\]"):
        tool.runs_from_result(result, ['C'], where='x.json')


def test_load_merges_per_class_files_as_seeds(tmp_path, load_tool):
    tool = load_tool(TOOL)
    files = [
        write(tmp_path / 's0.json', per_class_file([50, 60, None, 80])),
        write(tmp_path / 's1.json', per_class_file([70, 80, 90, 100])),
        write(tmp_path / 'base.json', per_class_file([0, 10, 20, 30])),
        write(tmp_path / 'demo.json', demo_result({'A': [[1, 2, 3, 4]]})),
    ]
    runs = tool.load_runs(files, ['LGR', 'LGR', 'base', 'run'])
    assert [r.label for r in runs] == ['LGR', 'base', 'run: A']
    np.testing.assert_array_equal(runs[0].seeds,
                                  [[50, 60, np.nan, 80], [70, 80, 90, 100]])
    prep = tool.prepare(runs)
    np.testing.assert_allclose(prep['mean'][0], [70, 90, 90, 60])
    assert prep['seeds'] == [2, 1, 1]
    # Without labels a per-class file is named after itself.
    assert tool.load_runs(files[2:3])[0].label == 'base'
    # Another accuracy column.
    image = write(tmp_path / 'img.json',
                  per_class_file([1, 2, 3, 4], key='accuracy_image'))
    run = tool.load_runs([image], key='accuracy_image')[0]
    assert run.seeds.tolist() == [[1, 2, 3, 4]]


def test_load_refuses(tmp_path, load_tool):
    tool = load_tool(TOOL)
    good = write(tmp_path / 'good.json', per_class_file([1, 2, 3, 4]))
    with pytest.raises(ValueError, match='2 labels for 1 files'):
        tool.load_runs([good], ['a', 'b'])
    with pytest.raises(ValueError, match=r"classes\[0\] has no "
                       "'accuracy_text'"):
        tool.load_runs([good], key='accuracy_text')
    other = per_class_file([1, 2, 3, 4])
    other['classes'][0]['train_count'] = 6
    other = write(tmp_path / 'other.json', other)
    with pytest.raises(ValueError, match="other.json: 'x' has other classes"):
        tool.load_runs([good, other], ['x', 'x'])
    with pytest.raises(ValueError, match='describe different classes'):
        tool.prepare(tool.load_runs([good, other]))
    bad = write(tmp_path / 'bad.json', dict(metrics=1))
    with pytest.raises(ValueError, match='bad.json: neither a demo'):
        tool.load_runs([bad])
    text = per_class_file(['high', 2, 3, 4])
    text = write(tmp_path / 'text.json', text)
    with pytest.raises(ValueError, match='text.json: accuracies must be'):
        tool.load_runs([text])


@pytest.mark.parametrize('axis', ['rank', 'count'])
def test_cli_writes_png(tmp_path, axis):
    result = write(tmp_path / 'results.json', demo_result({
        'Baseline': [[10, 20, 30, 40], [20, 40, 30, 50]],
        'VL-LTR': [[60, 50, 70, 80], [65, 55, 75, 85]],
        'Zero-shot': [[5, 5, 5, 5], [6, 6, 6, 6]],
    }))
    out = tmp_path / f'{axis}.png'
    proc = subprocess.run([
        sys.executable, TOOL, result, '--methods', 'VL-LTR', 'Baseline',
        '--out', str(out), '--x', axis, '--title', 'Tiny'
    ], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'{out}: 2 run(s), 4 classes' in proc.stdout
    with Image.open(out) as img:
        img.verify()
    with Image.open(out) as img:
        assert img.format == 'PNG'
        assert 500 < img.size[0] < 2500 and 300 < img.size[1] < 1500
        pixels = np.asarray(img.convert('RGB'))
    # Not a blank canvas: coloured lines were drawn.
    assert (pixels.std(axis=2) > 30).mean() > 0.002
