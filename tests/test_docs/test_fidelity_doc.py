"""docs/fidelity.md: every reference into our files points at a line that
holds the stated value, and every recipe row names both sides."""
import os.path as osp
import re

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DOC = osp.join(REPO, 'docs', 'fidelity.md')
# `value` ([name:N](../path#LN)) -- a reference into this repository.
OURS = re.compile(r'`([^`]+)` \(\[[^\]]+:(\d+)\]\(\.\./([^)#]+)#L(\d+)\)\)')
AUTHORS = re.compile(r'\]\(https://github\.com/ChangyaoTian/VL-LTR/blob/'
                     r'[0-9a-f]{40}/[^)#]+#L\d+\)')


def table_rows(text):
    """(section, cells) of every table body row."""
    section = None
    for line in text.splitlines():
        if line.startswith('## '):
            section = line[3:]
        elif line.startswith('| ') and not line.startswith('| ---') and (
                not line.startswith('| knob')):
            yield section, [c.strip() for c in line.strip('|').split(' | ')]


def test_every_reference_holds_its_value():
    text = open(DOC).read()
    refs = OURS.findall(text)
    assert len(refs) > 100
    for value, shown, path, line in refs:
        assert shown == line, f'{path}: link text says {shown}, anchor {line}'
        lines = open(osp.join(REPO, path)).read().split('\n')
        assert 1 <= int(line) <= len(lines), f'{path}:{line} out of range'
        assert value in lines[int(line) - 1], (
            f'docs/fidelity.md says {path}:{line} holds {value!r}, but it '
            f'reads {lines[int(line) - 1]!r}: regenerate the reference')


def test_recipe_rows_cite_both_sides():
    rows = [(s, c) for s, c in table_rows(open(DOC).read())
            if s.startswith(('Shared', 'Stage', 'Evaluation'))]
    assert len(rows) > 80
    for section, (knob, paper, authors, ours) in rows:
        assert AUTHORS.search(authors), f'{section} / {knob}: no authors ref'
        # A row with nothing to point at in our files says why in words.
        assert OURS.search(ours) or ours.startswith(('none', 'both')), (
            f'{section} / {knob}: no vlltr_mm reference')
