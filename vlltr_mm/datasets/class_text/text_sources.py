"""Readers for class-level text: descriptions and prompt templates.

Class names come from
:func:`vlltr_mm.datasets.annotation_io.read_class_names`.

Three description layouts are understood (paper §3.2, §4.1):

* the authors' layout, ``wiki/desc_{i}.txt`` per class index ``i``, with
  MediaWiki ``== Section ==`` headers; text before the first header is the
  summary;
* a JSON file mapping a class name or index to a text or a list of
  sentences;
* a folder with one ``{class name}.txt`` per class.

Everything here is plain file IO; sentence splitting happens later.
"""
import hashlib
import json
import os.path as osp
import re
import warnings
from typing import List, Optional, Sequence, Tuple, Union

#: Wikipedia sections whose sentences describe references, not the class.
DEFAULT_DROP_SECTIONS = ('References', 'External links', 'Further reading',
                         'Bibliography', 'See also', 'Notes')

#: A description document: free text to split, or ready-made sentences.
Document = Union[str, List[str]]

_HEADER = re.compile(r'^[ \t]*(={2,6})[ \t]*(.*?)[ \t]*\1[ \t]*$', re.M)


def decode_text(raw: bytes, path: str, bad_files: List[str]) -> str:
    """Decode UTF-8 (BOM tolerated), replacing invalid bytes.

    Files that needed replacement are appended to ``bad_files`` so that the
    caller can name them all in one warning.
    """
    try:
        return raw.decode('utf-8-sig')
    except UnicodeDecodeError:
        bad_files.append(path)
        return raw.decode('utf-8-sig', errors='replace')


def warn_bad_encoding(bad_files: Sequence[str]) -> None:
    """Name, in one warning, the files decoded with replacement chars."""
    if bad_files:
        warnings.warn(
            f'{len(bad_files)} text file(s) are not valid UTF-8; invalid '
            f'bytes were replaced with U+FFFD: {", ".join(bad_files)}')


def load_templates(templates: Union[None, str, Sequence[str]]) -> List[str]:
    """Resolve a template set to format strings with one ``{}`` slot.

    Args:
        templates (None | str | Sequence[str]): ``'openai_imagenet'`` (the
            80 CLIP ImageNet prompts), ``'simple'`` (CLIP's 7), None (no
            prompts) or custom strings such as ``'a photo of a {}.'``.

    Returns:
        list[str]: Format strings; fill with ``t.replace('{}', name)``.
    """
    if templates is None:
        return []
    if isinstance(templates, str):
        from open_clip import zero_shot_metadata as meta
        sets = dict(openai_imagenet=meta.OPENAI_IMAGENET_TEMPLATES,
                    simple=meta.SIMPLE_IMAGENET_TEMPLATES)
        if templates not in sets:
            raise ValueError(f'unknown template set {templates!r}; choose '
                             f'one of {sorted(sets)}, None or a list')
        # open_clip stores them as lambdas; calling with the slot recovers
        # the format string, which also makes them hashable for cache keys.
        return [t('{}') for t in sets[templates]]
    bad = [t for t in templates if not isinstance(t, str) or '{}' not in t]
    if bad:
        raise ValueError(f'templates need one "{{}}" slot each: {bad}')
    return list(templates)


def strip_wiki_sections(text: str,
                        drop_sections: Sequence[str] = DEFAULT_DROP_SECTIONS
                        ) -> str:
    """Remove section headers and the sections listed in ``drop_sections``.

    A dropped section takes its sub-sections with it (until the next header
    of the same or a higher level). Names compare case-insensitively.

    Args:
        text (str): MediaWiki plain text (``== Header ==`` lines).
        drop_sections (Sequence[str]): Section titles to remove.

    Returns:
        str: The summary and kept sections, paragraphs separated by blank
        lines.
    """
    drop = {s.strip().lower() for s in drop_sections}
    kept, start, drop_level = [], 0, None
    for m in _HEADER.finditer(text):
        if drop_level is None:
            kept.append(text[start:m.start()])
        level, title = len(m.group(1)), m.group(2).strip().lower()
        if drop_level is not None and level <= drop_level:
            drop_level = None
        if drop_level is None and title in drop:
            drop_level = level
        start = m.end()
    if drop_level is None:
        kept.append(text[start:])
    return '\n\n'.join(k.strip() for k in kept if k.strip())


def _read_file(path: str, digest, bad_files: List[str]) -> str:
    with open(path, 'rb') as f:
        raw = f.read()
    digest.update(f'{osp.basename(path)}:{len(raw)}:'.encode())
    digest.update(raw)
    return decode_text(raw, path, bad_files)


def class_file_name(name: str) -> str:
    """File name of a class in a per-class text folder (``/`` → ``_``)."""
    return name.replace('/', '_').replace('\\', '_') + '.txt'


def collect_descriptions(
    class_names: Sequence[str],
    wiki_dir: Optional[str] = None,
    json_file: Optional[str] = None,
    text_dir: Optional[str] = None,
    drop_sections: Sequence[str] = DEFAULT_DROP_SECTIONS,
) -> Tuple[List[List[Document]], str]:
    """Read every description source for every class.

    Sources are merged in the order wiki, JSON, per-class folder. A class
    without a file or entry simply gets fewer documents; the corpus decides
    what to warn about.

    Args:
        class_names (Sequence[str]): Names in label order.
        wiki_dir (str, optional): Folder with ``desc_{i}.txt``; a parent
            holding a ``wiki/`` sub-folder works too.
        json_file (str, optional): ``{name or index: text or [sentences]}``.
        text_dir (str, optional): Folder with :func:`class_file_name` files.
        drop_sections (Sequence[str]): See :func:`strip_wiki_sections`.

    Returns:
        tuple: ``docs`` (per class, a list of :data:`Document`) and the
        SHA-256 hex digest of every byte read (for cache keys).
    """
    num = len(class_names)
    docs: List[List[Document]] = [[] for _ in range(num)]
    digest = hashlib.sha256()
    bad_files: List[str] = []

    def add_text(i, text):
        text = strip_wiki_sections(text, drop_sections)
        if text:
            docs[i].append(text)

    if wiki_dir is not None:
        if not osp.isdir(wiki_dir):
            raise FileNotFoundError(f'wiki_dir {wiki_dir} does not exist')
        if (not osp.exists(osp.join(wiki_dir, 'desc_0.txt'))
                and osp.isdir(osp.join(wiki_dir, 'wiki'))):
            wiki_dir = osp.join(wiki_dir, 'wiki')
        for i in range(num):
            path = osp.join(wiki_dir, f'desc_{i}.txt')
            if osp.isfile(path):
                add_text(i, _read_file(path, digest, bad_files))
            else:
                digest.update(f'missing:desc_{i}.txt'.encode())
    if json_file is not None:
        raw_text = _read_file(json_file, digest, bad_files)
        try:
            entries = json.loads(raw_text)
        except json.JSONDecodeError as e:
            raise ValueError(f'{json_file}: invalid JSON ({e})') from e
        if not isinstance(entries, dict):
            raise ValueError(f'{json_file}: expected an object mapping class '
                             f'names or indices to text')
        index_of = {n: i for i, n in enumerate(class_names)}
        unknown = []
        for key, value in entries.items():
            i = index_of.get(key)
            if i is None and key.isdigit() and int(key) < num:
                i = int(key)
            if i is None:
                unknown.append(key)
                continue
            if isinstance(value, str):
                add_text(i, value)
            elif (isinstance(value, list)
                  and all(isinstance(v, str) for v in value)):
                docs[i].append(list(value))
            else:
                raise ValueError(f'{json_file}: entry {key!r} must be a '
                                 f'string or a list of strings')
        if unknown:
            warnings.warn(f'{json_file}: {len(unknown)} key(s) match no '
                          f'class name or index and are ignored: {unknown}')
    if text_dir is not None:
        if not osp.isdir(text_dir):
            raise FileNotFoundError(f'text_dir {text_dir} does not exist')
        for i, name in enumerate(class_names):
            path = osp.join(text_dir, class_file_name(name))
            if osp.isfile(path):
                add_text(i, _read_file(path, digest, bad_files))
            else:
                digest.update(f'missing:{class_file_name(name)}'.encode())
    warn_bad_encoding(bad_files)
    return docs, digest.hexdigest()
