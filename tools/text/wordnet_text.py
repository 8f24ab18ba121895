"""Offline class descriptions from NLTK's WordNet.

Used by ``build_class_text.py --source wordnet``.
"""
import os.path as osp
import re
from typing import Optional

_WNID = re.compile(r'^n(\d{8})$')


def wordnet_text(name: str, wordnet) -> Optional[str]:
    """A short description of ``name`` from WordNet, or None."""
    match = _WNID.match(name)
    if match:
        synset = wordnet.synset_from_pos_and_offset('n', int(match.group(1)))
    else:
        synsets = wordnet.synsets(name.strip().replace(' ', '_'), pos='n')
        if not synsets:
            return None
        synset = synsets[0]  # most frequent sense

    def words(s, k=None):
        return [n.replace('_', ' ') for n in s.lemma_names()][:k]

    head = name if not match else words(synset)[0]
    lines = [f'{head[:1].upper()}{head[1:]} is {synset.definition()}.']
    others = [w for w in words(synset) if w.lower() != head.lower()]
    if others:
        lines.append(f'{head[:1].upper()}{head[1:]} is also called '
                     f'{", ".join(others)}.')
    for hyper in synset.hypernyms()[:2]:
        lines.append(f'A {head} is a kind of {words(hyper)[0]}: '
                     f'{hyper.definition()}.')
    kinds = [words(h)[0] for h in synset.hyponyms()[:8]]
    if kinds:
        lines.append(f'Kinds of {head} include {", ".join(kinds)}.')
    return '\n'.join(lines) + '\n'


def load_wordnet(nltk_data_dir: Optional[str] = None):
    """NLTK's WordNet corpus reader, or a clear error if it is missing.

    Args:
        nltk_data_dir (str, optional): An extra NLTK data root (holding
            ``corpora/wordnet``) to search.
    """
    import nltk
    if nltk_data_dir is not None:
        nltk_data_dir = osp.abspath(nltk_data_dir)
        if nltk_data_dir not in nltk.data.path:
            nltk.data.path.append(nltk_data_dir)
    for resource in ('corpora/wordnet', 'corpora/wordnet.zip'):
        try:
            nltk.data.find(resource)
            break
        except LookupError:
            continue
    else:
        raise RuntimeError(
            "NLTK's wordnet corpus is not installed; run `python -m "
            'nltk.downloader wordnet` (or pass --nltk-data) or use '
            '--source wikipedia')
    from nltk.corpus import wordnet
    return wordnet
