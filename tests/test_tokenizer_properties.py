"""Property tests of the tokenizer's exact round trip on generated Unicode text (hypothesis).

The tokenizer is trained once per module on 2,000 lines each of Multi30k German and English, so
generated text is mostly out of its vocabulary and exercises the byte fallback. The runs are
deterministic (`derandomize=True`, no example database), so CI cannot flake.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import PreTrainedTokenizerFast

import hf_vanilla_transformer as hvt
from tests.helpers import multi30k_file

SPECIAL_IDS = {0, 1, 2, 3}
EOS_ID = 2

TRICKY_CHARACTERS = [
    *"\u0301\u0308\u0327\u20dd",  # combining marks
    *"\u212b\u2126\uf900\ufb01\u00c5\u00e9eAß",  # changed by NFC or NFKC, and their targets
    *"שלוםمرحبا\u200f\u200e\u202e\u061c",  # right-to-left letters and direction marks
    *"\u200d\u200c\u2060",  # zero-width joiner, non-joiner, word joiner
    *"\x00\ufeff\u2028\u2029\x85\x0b\x0c\r",  # NUL, BOM, line/paragraph separators, NEL, VT, FF, CR
    *"\t\n  \u00a0\u3000",  # tabs, newlines, spaces (also no-break and ideographic)
    *"😀👍🏽👨\U0001d518\U0010ffff",  # astral: emoji, skin-tone modifier, math letter, last code point
    *"</s>padunk",  # the letters of the special tokens
]
PIECES = ["<s>", "</s>", "<pad>", "<unk>", " ", "  ", "\t", "\n", "\r\n", "Ein Hund", " the "]

texts = st.lists(
    st.one_of(
        st.text(st.characters(codec="utf-8"), max_size=8),  # any code point but lone surrogates
        st.text(st.sampled_from(TRICKY_CHARACTERS), max_size=8),
        st.sampled_from(PIECES),
    ),
    max_size=10,
).map("".join)

SETTINGS = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
)


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    lines = []
    for name in ("train.de", "train.en"):
        with multi30k_file(name).open(encoding="utf-8") as handle:
            lines += [next(handle) for _ in range(2000)]
    return hvt.train_tokenizer(texts=lines, vocab_size=1000)


@SETTINGS
@given(text=texts)
def test_round_trip_is_exact_and_only_the_final_eos_is_special(tokenizer: PreTrainedTokenizerFast, text: str) -> None:
    ids = tokenizer(text).input_ids
    assert ids[-1] == EOS_ID
    assert not SPECIAL_IDS & set(ids[:-1]), [tokenizer.convert_ids_to_tokens(ids)]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


@SETTINGS
@given(batch=st.lists(texts, min_size=1, max_size=4))
def test_padded_batches_decode_to_their_texts(tokenizer: PreTrainedTokenizerFast, batch: list[str]) -> None:
    encoded = tokenizer(batch, padding=True)
    assert tokenizer.batch_decode(encoded.input_ids, skip_special_tokens=True) == batch
    for ids, mask in zip(encoded.input_ids, encoded.attention_mask, strict=True):
        length = sum(mask)
        assert ids[length - 1] == EOS_ID and set(ids[length:]) <= {tokenizer.pad_token_id}
