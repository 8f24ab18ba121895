"""The AnSS report's summary and the hook's summary log lines, on real
artifacts of tiny runs, against values computed here from the artifact."""
import copy
import math

import numpy as np
import pytest
import torch
from _anss_runs import NUM_ANCHORS, built_corpus, lgr_cfg, log_text, train

from vlltr_mm.engine.hooks.anss_report import render_report

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def run(assets, tmp_path_factory):
    """A trained tiny run: its artifact, report text and log."""
    work = tmp_path_factory.mktemp('anss_report')
    cfg = lgr_cfg(assets, work)
    cfg.log_level = 'INFO'
    runner, _ = train(cfg)
    return dict(
        art=torch.load(work / 'anss_anchors.pth', weights_only=True),
        report=(work / 'anss_anchors_report.md').read_text(),
        log=log_text(runner))


def _summary_rows(text):
    """class -> cells of the summary table."""
    part = text[text.index('## Summary'):text.index('## 0:')]
    rows = [line for line in part.splitlines()
            if line.startswith('| ') and line[2].isdigit()]
    return {int(r.split(' | ')[0][2:]): [x.strip() for x in
                                         r.strip('|').split(' | ')]
            for r in rows}


def _expected(art, corpus, c):
    """Kept kinds, L_lin ranges and cut-off overlap of class c, by hand."""
    lo, hi = corpus.class_offsets[c], corpus.class_offsets[c + 1]
    kept = art['indices'][c][art['mask'][c]].tolist()
    dropped = [i for i in range(lo, hi) if i not in kept]
    scores = art['scores'].double()
    prompts = sum(bool(corpus.is_prompt[i]) for i in kept)

    def span(rows):
        if not rows:
            return '-'
        a, b = float(scores[rows].min()), float(scores[rows].max())
        return f'{a:.4f}' if a == b else f'{a:.4f} – {b:.4f}'

    overlap = len(set(kept) & set(range(lo, lo + NUM_ANCHORS)))
    spread = float(scores[lo:hi].max() - scores[lo:hi].min())
    return dict(prompts=prompts, descs=len(kept) - prompts, kept=span(kept),
                dropped=span(dropped), overlap=overlap, n=len(kept),
                spread=spread, choice=bool(dropped))


def test_report_opens_with_a_per_class_summary(assets, run):
    art, text = run['art'], run['report']
    corpus = built_corpus(assets)
    assert text.index('## Summary') < text.index('## 0: ')
    rows = _summary_rows(text)
    assert sorted(rows) == [0, 1, 2, 3]
    log_p = math.log(art['meta']['num_pool_images'])
    total = dict(prompts=0, descs=0, overlap=0, n=0)
    for c, name in enumerate(assets['names']):
        exp = _expected(art, corpus, c)
        assert rows[c] == [
            str(c), name, str(exp['prompts']), str(exp['descs']),
            exp['kept'], exp['dropped'],
            f"{100 * exp['spread'] / log_p:.2f} %",
            f"{exp['overlap']} / {exp['n']}"
        ]
        for k in total:
            total[k] += exp[k]
    # the tiny run keeps descriptions and drops some first-M sentences
    assert total['descs'] > 0 and total['overlap'] < total['n'] == 31
    pct = f"{100 * total['overlap'] / total['n']:.1f} %"
    assert (f"Overall: 4 classes, 31 anchors kept ({total['prompts']} "
            f"prompts, {total['descs']} descriptions; 1 padded slots); "
            f"{total['overlap']} of 31 anchors ({pct}) are also in the "
            'cut-off set' in text)
    assert (f'0 of 3 classes with a choice have an L_lin spread (max - min) '
            f'below 1% of ln P = {0.01 * log_p:.4g} nats') in text
    assert 'the scores separate the sentences.' in text
    # the log carries the same summary in a few lines
    log = run['log']
    assert (f"AnSS summary: 4 classes; {total['overlap']} of 31 anchors "
            f'({pct}) are also in the cut-off set') in log
    assert 'AnSS summary: 0 of 3 classes with a choice' in log
    assert f"chose {total['prompts']} prompt and {total['descs']} " \
        'description sentences, 1 padded slots' in log


def test_flat_and_unscored_classes_are_flagged(assets, run):
    art = copy.deepcopy(run['art'])
    corpus = built_corpus(assets)
    off = corpus.class_offsets
    scores = art['scores']
    # class 0: the same ranking squeezed to a spread far below 1 % of ln P
    s0 = scores[off[0]:off[1]]
    scores[off[0]:off[1]] = s0.mean() + (s0 - s0.mean()) * 1e-3
    # class 2: as if the pool had no image of it
    scores[off[2]:off[3]] = float('inf')
    text = render_report(art, corpus)
    rows = _summary_rows(text)
    assert rows[0][6].endswith('% (flat)')
    assert rows[1][6].endswith('%') and not rows[1][6].endswith('(flat)')
    assert rows[2][4:7] == ['-', '-', 'unscored']
    assert ('1 of 3 classes with a choice have an L_lin spread (max - min) '
            'below 1% of ln P') in text
    assert '; 1 classes have no pool image (unscored, cut-off order)' in text
    assert 'The scores barely separate the sentences of these classes' \
        in text


def test_cutoff_report_says_nothing_was_scored(assets, tmp_path):
    train(lgr_cfg(assets, tmp_path, selection='cutoff'))
    text = (tmp_path / 'anss_anchors_report.md').read_text()
    rows = _summary_rows(text)
    for c in range(4):
        kept = rows[c][-1].split(' / ')
        assert kept[0] == kept[1]  # the cut-off set itself
        assert rows[c][4:7] == ['-', '-', '-']
    assert '31 of 31 anchors (100.0 %) are also in the cut-off set' in text
    assert 'Sentences were not scored' in text
    assert '(pool `unused`)' in text
    np.testing.assert_array_equal(
        [int(rows[c][2]) + int(rows[c][3]) for c in range(4)], [8, 8, 8, 7])
