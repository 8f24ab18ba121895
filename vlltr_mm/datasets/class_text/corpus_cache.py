"""On-disk cache of a built class-text corpus.

One uncompressed ``.npz`` per cache key: sentences as one UTF-8 blob plus
offsets, the flat token store, and a small JSON header. Loading is a few
``np.load`` reads and one ``bytes.decode``, with no sentence splitting or
tokenisation. Writes go to a temporary file in the same folder and are
renamed into place, so readers (other ranks, later runs) see either the
old file or the complete new one (:func:`~vlltr_mm.utils.files.atomic_write`,
so the file's mode follows the umask). The zip CRC of every member is checked
when it is read, which catches truncated and corrupted files.
"""
import json
import os.path as osp
import warnings
from typing import Dict, List, Optional, Tuple

import numpy as np

from vlltr_mm.utils.files import atomic_write

#: Bumped whenever the layout or the build rules change.
CACHE_VERSION = 1

_ARRAYS = ('sentence_blob', 'sentence_offsets', 'class_offsets', 'is_prompt',
           'tokens', 'token_offsets')


def encode_sentences(sentences: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    """Sentences as one UTF-8 ``uint8`` blob and int64 ``[N + 1]`` offsets.

    Offsets count characters of the joined text, not bytes, so decoding is
    one ``bytes.decode`` plus slicing.
    """
    lengths = np.fromiter(map(len, sentences), np.int64, count=len(sentences))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    blob = np.frombuffer(''.join(sentences).encode('utf-8'), np.uint8)
    return blob, offsets


def decode_sentences(blob: np.ndarray, offsets: np.ndarray) -> List[str]:
    """Inverse of :func:`encode_sentences`."""
    text = blob.tobytes().decode('utf-8')
    bounds = offsets.tolist()
    return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def save_corpus_cache(path: str, arrays: Dict[str, np.ndarray],
                      header: dict) -> None:
    """Atomically write a cache file.

    Args:
        path (str): Destination ``.npz``.
        arrays (dict): Every name in ``_ARRAYS``.
        header (dict): JSON-serialisable metadata; must hold ``key``.
    """
    missing = set(_ARRAYS) - set(arrays)
    if missing:
        raise KeyError(f'cache arrays missing: {sorted(missing)}')
    header = dict(header, version=CACHE_VERSION)
    payload = dict(arrays)
    payload['header'] = np.frombuffer(
        json.dumps(header).encode('utf-8'), np.uint8)
    with atomic_write(path, 'wb') as f:
        np.savez(f, **payload)


def load_corpus_cache(path: str, key: str
                      ) -> Optional[Tuple[Dict[str, np.ndarray], dict]]:
    """Read a cache file written by :func:`save_corpus_cache`.

    Args:
        path (str): The ``.npz`` file.
        key (str): Expected cache key; a file for another key is stale.

    Returns:
        tuple | None: ``(arrays, header)``, or None when the file is absent,
        stale, or unreadable (the last with a warning naming it, so that the
        caller rebuilds and overwrites it).
    """
    if not osp.isfile(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            header = json.loads(npz['header'].tobytes().decode('utf-8'))
            if (header.get('version') != CACHE_VERSION
                    or header.get('key') != key):
                return None
            arrays = {name: npz[name] for name in _ARRAYS}
        n = len(arrays['sentence_offsets']) - 1
        if not (len(arrays['token_offsets']) == n + 1
                == len(arrays['is_prompt']) + 1
                and arrays['class_offsets'][-1] == n
                and arrays['token_offsets'][-1] == len(arrays['tokens'])):
            raise ValueError('array sizes disagree')
    except Exception as e:  # any damage means: rebuild
        warnings.warn(f'class-text cache {path} is unreadable '
                      f'({type(e).__name__}: {e}); rebuilding it')
        return None
    return arrays, header
