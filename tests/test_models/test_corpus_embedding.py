"""The one routine that embeds a whole class-text corpus over ranks."""
import numpy as np
import torch
from mmpretrain.registry import TASK_UTILS

import vlltr_mm  # noqa: F401  (registers ClassTextCorpus)
from vlltr_mm.models.classifiers.corpus_embedding import (
    embed_corpus,
    rank_shard,
)


def _corpus():
    return TASK_UTILS.build(
        dict(type='ClassTextCorpus', class_names=['cat', 'dog', 'bird'],
             templates='simple', tokenizer='RN50'))


def test_embeds_every_sentence_in_corpus_order(capsys):
    corpus = _corpus()
    calls = []

    def encode(tokens):
        calls.append(len(tokens))
        return tokens[:, :4].float() * 2

    out = embed_corpus(encode, corpus, 4, torch.device('cpu'), batch_size=5)
    direct = corpus.get_tokens(np.arange(corpus.num_sentences))[:, :4] * 2
    assert corpus.num_sentences == 21
    assert calls == [5, 5, 5, 5, 1]
    assert out.dtype == torch.float32 and torch.equal(out, direct.float())
    # one bar with ETA on rank 0 whose line is ended
    printed = capsys.readouterr().out
    assert 'ETA' in printed and '21/21' in printed
    assert printed.endswith('\n')


def test_single_process_shard_is_everything():
    rows, sizes = rank_shard(7)
    assert rows.tolist() == list(range(7)) and sizes == [7]
    rows, sizes = rank_shard(0)
    assert len(rows) == 0 and sizes == [0]
