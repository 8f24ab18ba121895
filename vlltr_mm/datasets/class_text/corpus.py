"""The class-level text corpus of VL-LTR (paper §3.2, §4.1; docs/design.md)."""
import hashlib
import json
import logging
import os.path as osp
from typing import Optional, Sequence, Union

import numpy as np
import torch
from mmengine.logging import print_log
from mmpretrain.registry import TASK_UTILS

from ..annotation_io import read_class_names
from .class_order import check_class_order
from .corpus_build import (
    RankZeroProgress,
    build_class_sentences,
    warn_prompt_only,
)
from .corpus_cache import (
    decode_sentences,
    encode_sentences,
    load_corpus_cache,
    save_corpus_cache,
)
from .sentence_splitter import DEFAULT_ABBREVIATIONS, SentenceSplitter
from .text_sources import (
    DEFAULT_DROP_SECTIONS,
    collect_descriptions,
    load_templates,
)
from .tokens import TokenStore, build_text_tokenizer, tokenize_sentences


def _sha256(obj) -> str:
    return hashlib.sha256(
        json.dumps(obj, sort_keys=True).encode('utf-8')).hexdigest()


@TASK_UTILS.register_module()
class ClassTextCorpus:
    """Sentences and tokens describing every class.

    Class ``c`` owns the sentences ``class_offsets[c]:class_offsets[c + 1]``
    of one flat, class-major list: first the prompt templates filled with
    the class name, then the de-duplicated sentences of its descriptions
    (Punkt-split, whitespace-normalised, short fragments dropped).

    Args:
        class_names (Sequence[str], optional): Class names in label order.
        labels_file (str, optional): Read class names from this file (see
            :func:`~vlltr_mm.datasets.annotation_io.read_class_names`)
            when ``class_names`` is None, else check them against it.
        wiki_dir (str, optional): The authors' ``desc_{i}.txt`` folder.
        json_file (str, optional): ``{name or index: text or [sentences]}``.
        text_dir (str, optional): One ``{class name}.txt`` per class.
        templates (str | Sequence[str] | None): ``'openai_imagenet'`` (80),
            ``'simple'`` (7), None, or custom ``'... {} ...'`` strings.
            Defaults to ``'openai_imagenet'``.
        drop_sections (Sequence[str]): Wiki sections to drop. Defaults to
            References, External links, Further reading, Bibliography, See
            also, Notes.
        min_sentence_chars (int): Shorter description fragments are dropped.
            Defaults to 10.
        language (str): Punkt model. Defaults to ``'english'``.
        extra_abbreviations (Sequence[str]): Added to Punkt's abbreviations.
            Defaults to ``DEFAULT_ABBREVIATIONS`` (e.g., i.e., etc., ...).
        line_breaks (str): ``'paragraph'`` or ``'always'``, see
            :class:`SentenceSplitter`. Defaults to ``'paragraph'``.
        tokenizer (str): open_clip model name whose tokenizer to use, or
            ``'hf:NAME_OR_DIR'``. Defaults to ``'RN50'`` (CLIP BPE).
        context_length (int, optional): Tokens per sentence; None takes the
            model config's. Defaults to 77.
        cache_dir (str, optional): Cache built corpora here, keyed by a hash
            of the sources, templates, splitter settings, tokenizer and
            context length. A read-only folder works while it holds the
            cache; a build that cannot write it fails with a hint. None
            disables caching. Defaults to None.

    Attributes:
        class_names_source (str): ``labels_file``, else ``'class_names'``.
        sentences (list[str]): ``N`` sentences, class-major.
        sentence_labels (np.ndarray): int64 ``[N]`` class of each sentence.
        class_offsets (np.ndarray): int64 ``[C + 1]``.
        class_sentence_counts (np.ndarray): int64 ``[C]``.
        is_prompt (np.ndarray): bool ``[N]``, True for template sentences.
        tokens (TokenStore): Flat int32 tokens of all sentences.
        fingerprint (str): SHA-256 of the sentences, their class layout,
            the tokenizer name and the context length; a cache key for
            anything derived from the corpus (e.g. text embeddings).
        prompt_only_classes (list[str]): Classes without description.
        num_truncated (int): Sentences cut to ``context_length``.
        from_cache (bool): Whether this instance was loaded from the cache.
    """

    def __init__(self,
                 class_names: Optional[Sequence[str]] = None,
                 labels_file: Optional[str] = None,
                 wiki_dir: Optional[str] = None,
                 json_file: Optional[str] = None,
                 text_dir: Optional[str] = None,
                 templates: Union[None, str,
                                  Sequence[str]] = 'openai_imagenet',
                 drop_sections: Sequence[str] = DEFAULT_DROP_SECTIONS,
                 min_sentence_chars: int = 10,
                 language: str = 'english',
                 extra_abbreviations: Sequence[str] = DEFAULT_ABBREVIATIONS,
                 line_breaks: str = 'paragraph',
                 tokenizer: str = 'RN50',
                 context_length: Optional[int] = 77,
                 cache_dir: Optional[str] = None) -> None:
        if class_names is None:
            if labels_file is None:
                raise ValueError('ClassTextCorpus needs class_names or '
                                 'labels_file')
            class_names = read_class_names(labels_file)
        elif labels_file is not None:
            check_class_order(class_names, 'the class_names argument',
                              read_class_names(labels_file),
                              f'the labels file {labels_file}')
        self.class_names = [str(n) for n in class_names]
        self.class_names_source = labels_file or 'class_names'
        if not self.class_names:
            raise ValueError('ClassTextCorpus needs at least one class')
        if len(set(self.class_names)) < len(self.class_names):
            dup = next(n for i, n in enumerate(self.class_names)
                       if n in self.class_names[:i])
            raise ValueError(f'ClassTextCorpus: class name {dup!r} is '
                             'given twice; class names must be unique')
        self.tokenizer_name = tokenizer
        self._templates = load_templates(templates)
        splitter_cfg = dict(language=language, min_chars=min_sentence_chars,
                            extra_abbreviations=extra_abbreviations,
                            line_breaks=line_breaks)
        docs, source_digest = collect_descriptions(self.class_names,
                                                   wiki_dir, json_file,
                                                   text_dir, drop_sections)
        # The BPE tables take ~0.5 s to load: build the tokenizer only when
        # the length must come from it or the corpus must be built.
        tok = None
        if context_length is None:
            tok, context_length = build_text_tokenizer(tokenizer, None)
        self.context_length = int(context_length)
        import open_clip
        self.cache_key = _sha256(
            dict(class_names=self.class_names, templates=self._templates,
                 sources=source_digest,
                 drop_sections=sorted(s.lower() for s in drop_sections),
                 splitter=dict(splitter_cfg, extra_abbreviations=sorted(
                     extra_abbreviations)),
                 tokenizer=tokenizer, context_length=self.context_length,
                 open_clip=open_clip.__version__))
        self.cache_dir = cache_dir
        self.cache_file = (None if cache_dir is None else osp.join(
            cache_dir, f'class_text_{self.cache_key[:24]}.npz'))
        cached = (None if self.cache_file is None else load_corpus_cache(
            self.cache_file, self.cache_key))
        self.from_cache = cached is not None
        if cached is not None:
            self._load(*cached)
        else:
            splitter = SentenceSplitter(**splitter_cfg)
            if tok is None:
                tok, _ = build_text_tokenizer(tokenizer, self.context_length)
            self._build(docs, splitter, tok)

    def _load(self, arrays: dict, header: dict) -> None:
        """Restore a corpus written by :meth:`_build`."""
        self._set(
            decode_sentences(arrays['sentence_blob'],
                             arrays['sentence_offsets']),
            arrays['class_offsets'], arrays['is_prompt'],
            TokenStore(arrays['tokens'], arrays['token_offsets'],
                       self.context_length, header['pad_id']))
        self.num_truncated = header['num_truncated']
        self.prompt_only_classes = header['prompt_only_classes']
        print_log(
            f'ClassTextCorpus: loaded {self.num_sentences} sentences of '
            f'{self.num_classes} classes from {self.cache_file}',
            logger='current')
        # the same warning as a fresh build
        warn_prompt_only(self.prompt_only_classes, self.num_classes)

    def _build(self, docs, splitter: SentenceSplitter, tok) -> None:
        """Split, tokenise, log statistics and write the cache."""
        sentences, class_offsets, is_prompt, self.prompt_only_classes = \
            build_class_sentences(self.class_names, self._templates, docs,
                                  splitter)
        warn_prompt_only(self.prompt_only_classes, self.num_classes)
        progress = RankZeroProgress(
            len(sentences),
            f'ClassTextCorpus: tokenising {len(sentences)} sentences')
        store, self.num_truncated = tokenize_sentences(
            tok, sentences, self.context_length, progress.update)
        progress.close()
        self._set(sentences, class_offsets, is_prompt, store)
        self._log_stats()
        if self.cache_file is None:
            return
        blob, sent_offsets = encode_sentences(sentences)
        try:
            save_corpus_cache(
                self.cache_file,
                dict(sentence_blob=blob, sentence_offsets=sent_offsets,
                     class_offsets=class_offsets, is_prompt=is_prompt,
                     tokens=store.tokens, token_offsets=store.offsets),
                dict(key=self.cache_key, pad_id=store.pad_id,
                     num_truncated=self.num_truncated,
                     prompt_only_classes=self.prompt_only_classes))
        except OSError as e:
            raise PermissionError(
                f'ClassTextCorpus cannot write its cache into cache_dir '
                f'{self.cache_dir!r} ({type(e).__name__}: {e.strerror or e}'
                '); set the `cache_dir` key of the ClassTextCorpus config '
                "(`corpus = dict(type='ClassTextCorpus', ..., cache_dir=...)`"
                ', used by `model.corpus` and the dataset) to a writable '
                'folder, or to None to disable caching') from e

    def _set(self, sentences, class_offsets, is_prompt, store) -> None:
        self.sentences = sentences
        self.class_offsets = np.asarray(class_offsets, dtype=np.int64)
        self.is_prompt = np.asarray(is_prompt, dtype=bool)
        self.tokens = store
        self.class_sentence_counts = np.diff(self.class_offsets)
        self.sentence_labels = np.repeat(
            np.arange(self.num_classes, dtype=np.int64),
            self.class_sentence_counts)
        self.fingerprint = _sha256(
            dict(sentences=hashlib.sha256(
                '\n'.join(sentences).encode('utf-8')).hexdigest(),
                 class_offsets=self.class_offsets.tolist(),
                 tokenizer=self.tokenizer_name,
                 context_length=self.context_length))

    def _log_stats(self) -> None:
        counts = self.class_sentence_counts
        print_log(
            f'ClassTextCorpus: {self.num_classes} classes, '
            f'{self.num_sentences} sentences ({int(self.is_prompt.sum())} '
            f'prompts); per class min {counts.min()}, median '
            f'{int(np.median(counts))}, max {counts.max()}',
            logger='current')
        print_log(
            'sentences per class: ' + ', '.join(
                f'{n}={k}' for n, k in zip(self.class_names, counts)),
            logger='current', level=logging.DEBUG)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_sentences(self) -> int:
        return len(self.sentences)

    def get_tokens(self, indices) -> torch.Tensor:
        """Token rows of sentences, int64 ``[n, context_length]``."""
        return self.tokens.gather(indices)

    def sample_indices(self, labels, generator=None):
        """Draw one sentence index per label, uniform within its class.

        Args:
            labels (Tensor | np.ndarray | Sequence[int]): Class ids ``[B]``.
            generator (torch.Generator | np.random.Generator, optional):
                Randomness source. A numpy generator (or numpy labels with
                no generator) gives a numpy int64 array; otherwise a torch
                LongTensor on the labels' device.

        Returns:
            Tensor | np.ndarray: Sentence indices ``[B]``.
        """
        use_numpy = isinstance(generator, np.random.Generator) or (
            generator is None and not isinstance(labels, torch.Tensor))
        if use_numpy:
            lab = np.asarray(labels, dtype=np.int64)
            rng = generator or np.random.default_rng()
            u = rng.random(lab.shape)
            counts = self.class_sentence_counts[lab]
            return self.class_offsets[lab] + (u * counts).astype(np.int64)
        lab = torch.as_tensor(labels)
        device = lab.device
        lab = lab.long().cpu()
        u = torch.rand(lab.shape, generator=generator, dtype=torch.float64)
        counts = torch.from_numpy(self.class_sentence_counts)[lab]
        idx = torch.from_numpy(self.class_offsets)[lab] + (u * counts).long()
        return idx.to(device)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_classes={self.num_classes}, '
                f'num_sentences={self.num_sentences}, tokenizer='
                f'{self.tokenizer_name!r}, context_length='
                f'{self.context_length})')
