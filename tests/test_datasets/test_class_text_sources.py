import json

import pytest

from vlltr_mm.datasets.class_text.text_sources import (
    class_file_name,
    collect_descriptions,
    load_templates,
    strip_wiki_sections,
)

WIKI = """Tabby is a coat pattern.
It is common.

== Appearance ==
Stripes run along the body.

=== Colour ===
Brown or grey.

== References ==
Smith (2000).

=== Online ===
A website.

== History ==
Known since antiquity.

== External Links ==
http://example.org
"""


def test_strip_wiki_sections_drops_listed_sections_and_children():
    assert strip_wiki_sections(WIKI) == (
        'Tabby is a coat pattern.\nIt is common.\n\n'
        'Stripes run along the body.\n\nBrown or grey.\n\n'
        'Known since antiquity.')
    # a custom list; sub-section dropped alone keeps its parent
    assert strip_wiki_sections(WIKI, drop_sections=('colour', )) == (
        'Tabby is a coat pattern.\nIt is common.\n\n'
        'Stripes run along the body.\n\nSmith (2000).\n\nA website.\n\n'
        'Known since antiquity.\n\nhttp://example.org')
    assert strip_wiki_sections('no headers at all') == 'no headers at all'


def test_load_templates():
    openai = load_templates('openai_imagenet')
    assert len(openai) == 80 and len(set(openai)) == 80
    assert openai[0] == 'a bad photo of a {}.'
    assert all(t.count('{}') == 1 for t in openai)
    assert load_templates('simple')[0] == 'itap of a {}.'
    assert len(load_templates('simple')) == 7
    assert load_templates(None) == []
    assert load_templates(['a {} here.']) == ['a {} here.']
    with pytest.raises(ValueError, match='unknown template set'):
        load_templates('fancy')
    with pytest.raises(ValueError, match='slot'):
        load_templates(['no slot'])


def test_collect_from_json_and_text_dir(tmp_path):
    names = ['cat', 'AC/DC', 'dog']
    js = tmp_path / 'desc.json'
    js.write_text(
        json.dumps({
            'cat': 'A cat text.\n\n== See also ==\nDogs.',
            '2': ['Dog one.', 'Dog two.'],
            'unicorn': 'ignored'
        }))
    text_dir = tmp_path / 'texts'
    text_dir.mkdir()
    assert class_file_name('AC/DC') == 'AC_DC.txt'
    (text_dir / 'AC_DC.txt').write_text('A band.')
    with pytest.warns(UserWarning, match=r"ignored: \['unicorn'\]"):
        docs, digest = collect_descriptions(
            names, json_file=str(js), text_dir=str(text_dir))
    assert docs == [['A cat text.'], ['A band.'], [['Dog one.', 'Dog two.']]]
    # the digest covers every byte read
    (text_dir / 'AC_DC.txt').write_text('A band!')
    with pytest.warns(UserWarning):
        _, digest2 = collect_descriptions(
            names, json_file=str(js), text_dir=str(text_dir))
    assert digest2 != digest


def test_collect_from_wiki_dir_and_parent(tmp_path):
    wiki = tmp_path / 'wiki'
    wiki.mkdir()
    (wiki / 'desc_0.txt').write_text(WIKI)
    docs, digest = collect_descriptions(['tabby', 'missing'], str(wiki))
    assert docs[1] == [] and 'References' not in docs[0][0]
    # the authors' root (holding wiki/) works too and reads the same bytes
    docs2, digest2 = collect_descriptions(['tabby', 'missing'],
                                          str(tmp_path))
    assert docs2 == docs and digest2 == digest
    with pytest.raises(FileNotFoundError, match='nowhere'):
        collect_descriptions(['x'], str(tmp_path / 'nowhere'))


def test_non_utf8_is_replaced_and_named(tmp_path):
    wiki = tmp_path / 'wiki'
    wiki.mkdir()
    (wiki / 'desc_0.txt').write_bytes(b'Caf\xe9 au lait is brown.')
    (wiki / 'desc_1.txt').write_bytes(b'\xef\xbb\xbfBOM is fine.')
    with pytest.warns(UserWarning, match=r'not valid UTF-8.*desc_0\.txt'):
        docs, _ = collect_descriptions(['a', 'b'], str(wiki))
    assert docs == [['Caf\ufffd au lait is brown.'], ['BOM is fine.']]


def test_bad_json(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"cat": ')
    with pytest.raises(ValueError, match='bad.json: invalid JSON'):
        collect_descriptions(['cat'], json_file=str(bad))
    bad.write_text('["cat"]')
    with pytest.raises(ValueError, match='expected an object'):
        collect_descriptions(['cat'], json_file=str(bad))
    bad.write_text('{"cat": 3}')
    with pytest.raises(ValueError, match="entry 'cat' must be"):
        collect_descriptions(['cat'], json_file=str(bad))
