import os
import warnings

import numpy as np
import open_clip
import pytest
import torch
from mmpretrain.registry import TASK_UTILS

from vlltr_mm.datasets.class_text import ClassTextCorpus
from vlltr_mm.datasets.class_text.text_sources import load_templates

NAMES = ['tabby cat', 'sea otter', 'axolotl']
DESC_0 = """The tabby cat is a domestic cat with a striped coat. Mr. Smith
bred many of them, e.g. the famous one. The tabby cat is a domestic cat with a
striped coat.
Tiny.

== Appearance ==
Stripes run along the back. a photo of a tabby cat.

=== Colour ===
Brown, grey or orange.

== References ==
Smith, J. (2000). Cats of the world. Cat Press.

=== Online ===
Some website about cats.

== External links ==
Official site of the cat fanciers.
"""
DESC_1 = 'Sea otters float on their backs. They use stones as tools.\n'
EXPECTED_0 = [
    'The tabby cat is a domestic cat with a striped coat.',
    'Mr. Smith bred many of them, e.g. the famous one.',
    'Stripes run along the back.', 'Brown, grey or orange.'
]


@pytest.fixture
def wiki_root(tmp_path):
    """A corpus in the authors' layout: root/wiki/desc_{i}.txt."""
    wiki = tmp_path / 'text' / 'wiki'
    wiki.mkdir(parents=True)
    (wiki / 'desc_0.txt').write_text(DESC_0)
    (wiki / 'desc_1.txt').write_text(DESC_1)
    (wiki / 'desc_2.txt').write_text('Axolotls keep their gills as adults.')
    (tmp_path / 'text' / 'labels.txt').write_text('\n'.join(NAMES) + '\n')
    return tmp_path / 'text'


def build(root, **kwargs):
    cfg = dict(type='ClassTextCorpus', labels_file=str(root / 'labels.txt'),
               wiki_dir=str(root / 'wiki'))
    cfg.update(kwargs)
    return TASK_UTILS.build(cfg)


def test_authors_layout_fixture_gives_expected_sentences(wiki_root):
    corpus = build(wiki_root)
    assert corpus.class_names == NAMES and corpus.num_classes == 3
    templates = load_templates('openai_imagenet')
    start, end = corpus.class_offsets[:2]
    class0 = corpus.sentences[start:end]
    # templates first (80 prompts), then the de-duplicated description
    # with References / External links (and their sub-sections) dropped,
    # the fragment "Tiny." gone and the prompt-equal sentence dropped.
    assert class0 == [t.replace('{}', 'tabby cat')
                      for t in templates] + EXPECTED_0
    assert corpus.class_offsets.tolist() == [0, 84, 84 + 82, 84 + 82 + 81]
    assert corpus.sentences[84 + 80:84 + 82] == [
        'Sea otters float on their backs.', 'They use stones as tools.'
    ]
    counts = corpus.class_sentence_counts
    assert corpus.num_sentences == len(corpus.sentences) == counts.sum()
    assert corpus.sentence_labels.dtype == np.int64
    assert corpus.sentence_labels.tolist() == sum(
        ([c] * n for c, n in enumerate(counts)), [])
    assert corpus.is_prompt.sum() == 240
    assert corpus.is_prompt[:80].all() and not corpus.is_prompt[80:84].any()
    tokens = corpus.get_tokens([0, 83, 84])
    assert tokens.shape == (3, 77) and tokens.dtype == torch.int64
    assert torch.equal(
        tokens,
        open_clip.get_tokenizer('RN50')(
            [corpus.sentences[i] for i in (0, 83, 84)]))
    assert corpus.prompt_only_classes == []


def test_json_and_text_dir_sources_with_simple_templates(tmp_path):
    (tmp_path / 'desc.json').write_text(
        '{"0": "Cats purr when content.", "dog": ["Dogs bark at night."]}')
    (tmp_path / 'texts').mkdir()
    (tmp_path / 'texts' / 'dog.txt').write_text('Dogs wag their tails.')
    corpus = ClassTextCorpus(
        class_names=['cat', 'dog'], json_file=str(tmp_path / 'desc.json'),
        text_dir=str(tmp_path / 'texts'), templates='simple')
    assert corpus.sentences == [t.replace('{}', 'cat')
                                for t in load_templates('simple')] + [
        'Cats purr when content.'
    ] + [t.replace('{}', 'dog') for t in load_templates('simple')] + [
        'Dogs bark at night.', 'Dogs wag their tails.'
    ]
    assert corpus.is_prompt.sum() == 14


def test_missing_descriptions_warn_once_and_use_prompts(wiki_root):
    os.remove(wiki_root / 'wiki' / 'desc_2.txt')
    (wiki_root / 'wiki' / 'desc_1.txt').write_text('Tiny.')  # all dropped
    with pytest.warns(UserWarning) as record:
        corpus = build(wiki_root)
    msgs = [str(w.message) for w in record if 'prompts only' in str(
        w.message)]
    assert len(msgs) == 1
    assert "2 of 3 classes" in msgs[0] and "'sea otter', 'axolotl'" in msgs[0]
    assert corpus.prompt_only_classes == ['sea otter', 'axolotl']
    assert corpus.class_sentence_counts.tolist() == [84, 80, 80]
    assert corpus.is_prompt[84:].all()


def test_non_utf8_description_is_decoded_with_replacement(wiki_root):
    (wiki_root / 'wiki' / 'desc_1.txt').write_bytes(
        b'Sea otters eat sea urchins \xff\xfe daily.')
    with pytest.warns(UserWarning, match=r'not valid UTF-8.*desc_1\.txt'):
        corpus = build(wiki_root)
    assert 'Sea otters eat sea urchins \ufffd\ufffd daily.' in (
        corpus.sentences)


def test_class_without_sentences_and_prompts_off_is_an_error(wiki_root):
    os.remove(wiki_root / 'wiki' / 'desc_1.txt')
    with pytest.raises(ValueError, match=r"class 1 \('sea otter'\) has no "
                       'sentences'):
        build(wiki_root, templates=None)


def test_class_name_sources_must_agree(wiki_root):
    with pytest.raises(ValueError, match=(
            r'the labels file .*labels\.txt has 3 classes but the '
            'class_names argument has 2')):
        build(wiki_root, class_names=['a', 'b'])
    # the same names in another order: the wiki files follow the file
    with pytest.raises(ValueError, match=(
            r"'sea otter' is class 1 in the labels file .*labels\.txt but "
            'class 0 in the class_names argument')):
        build(wiki_root, class_names=['sea otter', 'tabby cat', 'axolotl'])
    # spelling (case, underscores) is not a different name
    corpus = build(wiki_root, class_names=['Tabby_cat', 'sea otter',
                                           'axolotl'], templates='simple')
    assert corpus.class_names[0] == 'Tabby_cat'
    assert corpus.class_names_source == str(wiki_root / 'labels.txt')
    with pytest.raises(ValueError, match='class_names or labels_file'):
        ClassTextCorpus()


def test_cache_reuse_and_key_changes(wiki_root, tmp_path):
    cache = str(tmp_path / 'cache')
    first = build(wiki_root, cache_dir=cache)
    assert not first.from_cache and os.path.isfile(first.cache_file)
    again = build(wiki_root, cache_dir=cache)
    assert again.from_cache
    assert again.sentences == first.sentences
    assert again.fingerprint == first.fingerprint
    assert np.array_equal(again.class_offsets, first.class_offsets)
    assert np.array_equal(again.is_prompt, first.is_prompt)
    assert torch.equal(again.get_tokens(range(again.num_sentences)),
                       first.get_tokens(range(first.num_sentences)))
    keys = {first.cache_key}
    fingerprints = {first.fingerprint}
    variants = [dict(templates='simple'), dict(context_length=32),
                dict(tokenizer='ViT-B-16'), dict(min_sentence_chars=40)]
    for variant in variants:
        with warnings.catch_warnings():
            # min_sentence_chars=40 leaves two classes prompts-only
            warnings.filterwarnings('ignore', '.*prompts only')
            c = build(wiki_root, cache_dir=cache, **variant)
        assert not c.from_cache, variant
        keys.add(c.cache_key)
        fingerprints.add(c.fingerprint)
    # one changed sentence
    (wiki_root / 'wiki' / 'desc_1.txt').write_text(
        DESC_1.replace('stones', 'rocks'))
    changed = build(wiki_root, cache_dir=cache)
    assert not changed.from_cache
    assert 'They use rocks as tools.' in changed.sentences
    keys.add(changed.cache_key)
    fingerprints.add(changed.fingerprint)
    assert len(keys) == len(fingerprints) == len(variants) + 2
    assert len(os.listdir(cache)) >= len(variants) + 2


@pytest.mark.parametrize('damage', ['truncate', 'flip_byte', 'garbage'])
def test_damaged_cache_is_rebuilt_with_warning(wiki_root, tmp_path, damage):
    cache = str(tmp_path / 'cache')
    first = build(wiki_root, cache_dir=cache)
    data = open(first.cache_file, 'rb').read()
    if damage == 'truncate':
        data = data[:len(data) // 2]
    elif damage == 'flip_byte':
        i = data.index(b'striped coat')  # inside the sentence blob
        data = data[:i] + b'X' + data[i + 1:]
    else:
        data = b'not a zip file'
    with open(first.cache_file, 'wb') as f:
        f.write(data)
    with pytest.warns(UserWarning, match='cache .* unreadable.*rebuilding'):
        rebuilt = build(wiki_root, cache_dir=cache)
    assert not rebuilt.from_cache
    assert rebuilt.sentences == first.sentences
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        assert build(wiki_root, cache_dir=cache).from_cache


def test_sample_indices_uniform_within_class(wiki_root):
    corpus = build(wiki_root)
    draws_per_sentence = 300
    n0 = int(corpus.class_sentence_counts[0])
    labels = torch.zeros(n0 * draws_per_sentence, dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    idx = corpus.sample_indices(labels, gen)
    assert idx.dtype == torch.int64
    counts = np.bincount(idx.numpy(), minlength=corpus.num_sentences)
    assert counts[:n0].min() > 0 and counts[n0:].sum() == 0
    # chi-square goodness of fit against uniform; 99.9% critical value
    # for 83 degrees of freedom is about 128.
    expected = draws_per_sentence
    chi2 = ((counts[:n0] - expected)**2 / expected).sum()
    assert chi2 < 128, chi2
    same = corpus.sample_indices(labels, torch.Generator().manual_seed(0))
    other = corpus.sample_indices(labels, torch.Generator().manual_seed(1))
    assert torch.equal(idx, same) and not torch.equal(idx, other)
    # numpy path, every class
    rng = np.random.default_rng(0)
    lab = np.repeat(np.arange(3), 2000)
    idx_np = corpus.sample_indices(lab, rng)
    assert isinstance(idx_np, np.ndarray)
    assert np.array_equal(corpus.sentence_labels[idx_np], lab)
