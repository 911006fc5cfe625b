"""Shared byte-level BPE (§5.1): exact round trip for any Unicode, no <unk>, </s> appended, save/load."""

import pytest
from transformers import AutoTokenizer

import hf_vanilla_transformer as hvt
from tests.helpers import MULTI30K, multi30k_tokenizer

TEXTS = [
    "Ein kleines Mädchen klettert in ein Spielhaus aus Holz.",
    "A little girl climbing into a wooden playhouse.",
    "Straße, Größe, Fuß – «Anführungszeichen» und „deutsche“ Zeichen.",
    "我们在公园里散步。",
    "Emoji: 🐶🚀👍🏽 and a ZWJ family 👨‍👩‍👧",
    "  leading and trailing spaces, \ttabs\tand\nnewlines  ",
    "",
]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_is_exact_without_unk(text):
    tok = multi30k_tokenizer()
    ids = tok(text).input_ids
    assert tok.unk_token_id not in ids
    assert ids[-1] == tok.eos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_special_tokens_and_ids():
    tok = multi30k_tokenizer()
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    assert (tok.pad_token, tok.bos_token, tok.eos_token, tok.unk_token) == ("<pad>", "<s>", "</s>", "<unk>")
    assert len(tok) == 1000


def test_words_tokenise_alike_at_sentence_start_and_inside():
    tok = multi30k_tokenizer()
    first = tok("Hund", add_special_tokens=False).input_ids
    inside = tok("Ein Hund", add_special_tokens=False).input_ids
    assert inside[-len(first) :] == first


def test_text_target_and_batch_padding():
    tok = multi30k_tokenizer()
    batch = tok(
        ["Ein Hund läuft.", "Zwei Männer stehen auf der Straße."],
        text_target=["A dog runs.", "Two men."],
        padding=True,
        return_tensors="pt",
    )
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["labels"][0].tolist()[: len(tok("A dog runs.").input_ids)] == tok("A dog runs.").input_ids
    assert batch["input_ids"][0, -1].item() == tok.pad_token_id


def test_vocabulary_is_shared_between_languages():
    tok = multi30k_tokenizer()
    vocab = tok.get_vocab()
    assert any(t in vocab for t in ("Ġder", "Ġdie")) and any(t in vocab for t in ("Ġthe", "Ġand"))


def test_save_and_load_with_auto_tokenizer(tmp_path):
    tok = multi30k_tokenizer()
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in TEXTS:
        assert loaded(text).input_ids == tok(text).input_ids
        assert loaded.decode(loaded(text).input_ids, skip_special_tokens=True) == text


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-file.de"):
        hvt.train_tokenizer([tmp_path / "no-such-file.de"], vocab_size=500)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="no text"):
        hvt.train_tokenizer([empty], vocab_size=500)
    with pytest.raises(ValueError, match="vocab_size must be at least 260"):
        hvt.train_tokenizer([MULTI30K / "val.en"], vocab_size=100)


def test_train_from_texts():
    tok = hvt.train_tokenizer(texts=["ein hund", "a dog"] * 20, vocab_size=300)
    assert tok.decode(tok("ein hund").input_ids, skip_special_tokens=True) == "ein hund"
