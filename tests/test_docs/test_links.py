"""Every relative link of README.md and docs/*.md resolves: the file exists
and, for a Markdown file, the #anchor names one of its headings."""
import glob
import os.path as osp
import re

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAGES = ['README.md', 'CHANGELOG.md'] + sorted(
    osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'docs', '*.md')))
LINK = re.compile(r'\]\(([^)\s]+)\)')


def anchors(path):
    """GitHub's heading anchors of a Markdown file."""
    out = set()
    for line in open(path).read().splitlines():
        if line.startswith('#'):
            text = line.lstrip('#').strip().lower()
            text = re.sub(r'[^\w\- ]', '', text)
            out.add(text.replace(' ', '-'))
    return out


def test_pages():
    assert 'docs/gpu_recipe.md' in PAGES and len(PAGES) > 10


@pytest.mark.parametrize('page', PAGES)
def test_relative_links_resolve(page):
    text = open(osp.join(REPO, page)).read()
    # Code blocks hold shell, not links.
    text = re.sub(r'```.*?```', '', text, flags=re.S)
    for target in LINK.findall(text):
        if re.match(r'[a-z]+:', target):  # http(s), mailto
            continue
        path, _, anchor = target.partition('#')
        full = osp.normpath(osp.join(REPO, osp.dirname(page), path)) \
            if path else osp.join(REPO, page)
        assert osp.exists(full), f'{page}: broken link {target}'
        if anchor and full.endswith('.md'):
            assert anchor in anchors(full), f'{page}: no #{anchor} in {path}'
        if anchor.startswith('L') and anchor[1:].isdigit():
            lines = open(full).read().count('\n') + 1
            assert int(anchor[1:]) <= lines, f'{page}: {target} past the end'
