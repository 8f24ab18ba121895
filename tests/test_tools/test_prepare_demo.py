import importlib.util
import json
import os
import os.path as osp
import re
import shutil

import pytest

from vlltr_mm.datasets.class_text import ClassTextCorpus
from vlltr_mm.demo import demo_clip as dc

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'demo', 'prepare_demo.py')
TEXT_DIR = osp.join(REPO, 'configs', 'vlltr', 'demo_text')
NAMES = ['t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal',
         'shirt', 'sneaker', 'bag', 'ankle boot']


def load_tool():
    spec = importlib.util.spec_from_file_location('prepare_demo', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_tool()


def test_demo_text_layout():
    """Authors' layout: summary, sections, reference sections to drop."""
    with open(osp.join(TEXT_DIR, 'labels.txt')) as f:
        assert f.read().split('\n')[:-1] == NAMES
    for i in range(len(NAMES)):
        with open(osp.join(TEXT_DIR, 'wiki', f'desc_{i}.txt')) as f:
            text = f.read()
        headers = re.findall(r'^== (.+) ==$', text, flags=re.M)
        assert headers[-2:] == ['References', 'External links']
        assert not text.startswith('==')  # summary first
    corpus = ClassTextCorpus(labels_file=osp.join(TEXT_DIR, 'labels.txt'),
                             wiki_dir=osp.join(TEXT_DIR, 'wiki'),
                             templates=None, tokenizer=dc.DEMO_MODEL_NAME,
                             context_length=dc.DEMO_CONTEXT_LENGTH)
    text = ' '.join(corpus.sentences)
    # Reference sections are dropped; visual and off-topic text is kept.
    assert 'Example' not in text and 'portal' not in text
    assert 'rubber sole' in text and 'Billions of t-shirts' in text
    assert corpus.num_sentences >= 10 * 11


def test_check_demo_text():
    info = tool.check_demo_text(TEXT_DIR, NAMES)
    assert len(info['sentences']) == 10
    assert min(info['sentences']) >= 11
    assert info['prompts'] == [80] * 10
    assert info['max_tokens'] <= info['context_length'] == 32


def test_check_demo_text_errors(tmp_path):
    with pytest.raises(ValueError, match='lists .* the dataset'):
        tool.check_demo_text(TEXT_DIR, NAMES[::-1])
    bad = tmp_path / 'text'
    shutil.copytree(TEXT_DIR, bad)
    # Only reference sections left for class 3.
    (bad / 'wiki' / 'desc_3.txt').write_text(
        '== References ==\nA book about dresses, 1999, page 12.\n')
    # Too little text is a warning: a user's own text may be short, and the
    # class still has its prompts.
    with pytest.warns(UserWarning, match=r"fewer than 5 description "
                      r"sentences for \['dress'\]"):
        info = tool.check_demo_text(str(bad), NAMES)
    assert info['sentences'][3] == 0 and info['prompts'][3] == 80
    shutil.copy(osp.join(TEXT_DIR, 'wiki', 'desc_3.txt'),
                bad / 'wiki' / 'desc_3.txt')
    with open(bad / 'wiki' / 'desc_0.txt', 'a') as f:
        f.write('\n== Extra ==\n' + 'A very long sentence that keeps '
                'going ' * 6 + 'without end.\n')
    with pytest.raises(ValueError, match='1 sentences exceed 32 tokens'):
        tool.check_demo_text(str(bad), NAMES)


@pytest.mark.skipif(not osp.isdir('/usr/share/datasets/fashion-mnist'),
                    reason='Debian package dataset-fashion-mnist absent')
def test_prepare_demo_end_to_end(tmp_path, capsys):
    out = str(tmp_path / 'demo')
    summary = tool.prepare_demo(out, download=False)
    first = capsys.readouterr().out
    assert 'data: built' in first and 'model: built' in first
    with open(osp.join(out, 'demo_assets.json')) as f:
        assert json.load(f) == json.loads(json.dumps(summary))
    assert summary['classes'] == NAMES
    assert sorted(summary['train_counts'], reverse=True)[::9] == [500, 5]
    for path in [summary['checkpoint'], summary['labels_file'],
                 summary['text_labels_file'],
                 *summary['ann_files'].values()]:
        assert osp.isfile(path), path
    assert summary['model_name'] == dc.DEMO_MODEL_NAME
    assert (summary['embed_dim'], summary['image_size'],
            summary['context_length']) == (256, 64, 32)
    mtime = os.stat(summary['checkpoint']).st_mtime_ns
    tool.main([out, '--no-download'])
    second = capsys.readouterr().out
    assert 'data: up to date' in second and 'model: up to date' in second
    assert os.stat(summary['checkpoint']).st_mtime_ns == mtime
