"""Shared byte-level BPE (§5.1): exact round trip for any Unicode, no <unk>, </s> appended, save/load.

`tests/test_tokenizer_properties.py` checks the round trip on generated text as well.
"""

import json
import subprocess
import sys

import pytest
from transformers import AutoTokenizer, DataCollatorForSeq2Seq

import hf_vanilla_transformer as hvt
from tests.helpers import multi30k_file, multi30k_tokenizer

TEXTS = [
    "Ein kleines Mädchen klettert in ein Spielhaus aus Holz.",
    "A little girl climbing into a wooden playhouse.",
    "Straße, Größe, Fuß – «Anführungszeichen» und „deutsche“ Zeichen.",
    "我们在公园里散步。",
    "Emoji: 🐶🚀👍🏽 and a ZWJ family 👨‍👩‍👧",
    "  leading and trailing spaces, \ttabs\tand\nnewlines  ",
    "",
    # Not NFC-normalised: each of these changed under the normaliser of earlier versions.
    "Cafe\u0301 and Café",  # e + COMBINING ACUTE ACCENT vs U+00E9
    "\u212b ANGSTROM SIGN, \u2126 OHM SIGN, \uf900 CJK COMPATIBILITY IDEOGRAPH",
    "עברית ועربية: right-to-left \u200f marks \u202e override",
    "NUL \x00, BOM \ufeff, LINE SEPARATOR \u2028, CR\r\nLF, NBSP\u00a0",
    # Special-token markup in user text is text.
    "a </s> b",
    "<s>x</s><pad><unk>",
    " <pad> ",
]
SPECIAL_IDS = {0, 1, 2, 3}


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_is_exact_without_unk(text):
    tok = multi30k_tokenizer()
    ids = tok(text).input_ids
    assert tok.unk_token_id not in ids
    assert ids[-1] == tok.eos_token_id
    assert not SPECIAL_IDS & set(ids[:-1])  # the appended </s> is the only special id
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.decode(ids) == text + "</s>"


def test_unicode_is_not_normalised():
    tok = multi30k_tokenizer()
    decomposed, composed = "Cafe\u0301", "Caf\u00e9"
    assert tok(decomposed).input_ids != tok(composed).input_ids
    assert tok.decode(tok(decomposed).input_ids, skip_special_tokens=True) == decomposed
    assert tok.decode(tok("\u212b").input_ids, skip_special_tokens=True) == "\u212b"  # not U+00C5
    assert tok.backend_tokenizer.normalizer.normalize_str(decomposed) == " " + decomposed


def test_a_lone_surrogate_is_refused_not_mangled():
    """Not UTF-8, so not text the round trip can cover (the module docstring says so)."""
    with pytest.raises(TypeError):
        multi30k_tokenizer()("a\ud800b")


def test_special_token_markup_in_text_is_encoded_as_text():
    tok = multi30k_tokenizer()
    ids = tok("a </s> b").input_ids
    assert ids.count(tok.eos_token_id) == 1 and ids[-1] == tok.eos_token_id
    assert tok.tokenize("a </s> b") == ["Ġa", "Ġ", "<", "/", "s", ">", "Ġb"]
    assert tok.convert_tokens_to_ids("</s>") == tok.eos_token_id  # the special token itself is unchanged
    # markup is parsed only when asked for, per call
    assert tok("a </s> b", split_special_tokens=False).input_ids.count(tok.eos_token_id) == 2


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
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["split_special_tokens"] is True
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in TEXTS:
        assert loaded(text).input_ids == tok(text).input_ids
        assert loaded.decode(loaded(text).input_ids, skip_special_tokens=True) == text


def test_a_fresh_process_loads_the_same_tokenizer(tmp_path):
    """As when a model is shared on the Hub: plain `AutoTokenizer`, nothing of this package imported."""
    tok = multi30k_tokenizer()
    tok.save_pretrained(tmp_path)
    script = (
        "import json, sys\n"
        "from transformers import AutoTokenizer\n"
        "texts = json.loads(sys.stdin.read())\n"
        f"tok = AutoTokenizer.from_pretrained({str(tmp_path)!r})\n"
        "assert 'hf_vanilla_transformer' not in sys.modules\n"
        "ids = [tok(text).input_ids for text in texts]\n"
        "print(json.dumps([ids, tok.batch_decode(ids, skip_special_tokens=True)]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", script], input=json.dumps(TEXTS), capture_output=True, text=True, check=True
    )
    ids, decoded = json.loads(result.stdout)
    assert ids == [tok(text).input_ids for text in TEXTS]
    assert decoded == TEXTS


def test_tokenizers_saved_by_earlier_versions_behave_as_saved(tmp_path):
    """Earlier versions wrote an NFC normaliser and no `split_special_tokens`; models trained with them
    expect that, so loading must not change it."""
    multi30k_tokenizer().save_pretrained(tmp_path)
    tokenizer_json = json.loads((tmp_path / "tokenizer.json").read_text())
    tokenizer_json["normalizer"] = {
        "type": "Sequence",
        "normalizers": [{"type": "NFC"}, {"type": "Prepend", "prepend": " "}],
    }
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    del config["split_special_tokens"]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))

    old = AutoTokenizer.from_pretrained(tmp_path)
    assert old("Cafe\u0301").input_ids == old("Caf\u00e9").input_ids  # still NFC
    assert old.decode(old("Cafe\u0301").input_ids, skip_special_tokens=True) == "Caf\u00e9"
    assert old("a </s> b").input_ids.count(old.eos_token_id) == 2  # still parses markup
    text = TEXTS[0]
    assert old(text).input_ids == multi30k_tokenizer()(text).input_ids  # NFC text: same ids as now
    assert old.decode(old(text).input_ids, skip_special_tokens=True) == text


def test_padding_collator_and_batch_decode():
    tok = multi30k_tokenizer()
    sources, targets = ["a </s> b", "Cafe\u0301", ""], ["<pad>", " x ", "Ein Hund."]
    features = [
        {"input_ids": tok(source).input_ids, "labels": tok(text_target=target).input_ids}
        for source, target in zip(sources, targets, strict=True)
    ]
    padded = tok.pad([{"input_ids": f["input_ids"]} for f in features], return_tensors="pt")
    lengths = [len(f["input_ids"]) for f in features]
    assert padded["attention_mask"].sum(dim=1).tolist() == lengths
    assert padded["input_ids"][2, 1:].tolist() == [tok.pad_token_id] * (max(lengths) - 1)  # "" is just </s>
    batch = DataCollatorForSeq2Seq(tok, label_pad_token_id=-100)(features)
    assert tok.batch_decode(batch["input_ids"], skip_special_tokens=True) == sources
    label_ids = batch["labels"].masked_fill(batch["labels"] == -100, tok.pad_token_id)
    assert tok.batch_decode(label_ids, skip_special_tokens=True) == targets
    for row, feature in zip(batch["labels"].tolist(), features, strict=True):
        labels = feature["labels"]
        assert labels[-1] == tok.eos_token_id
        assert row == labels + [-100] * (len(row) - len(labels))


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-file.de"):
        hvt.train_tokenizer([tmp_path / "no-such-file.de"], vocab_size=500)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match="no text"):
        hvt.train_tokenizer([empty], vocab_size=500)
    with pytest.raises(ValueError, match="vocab_size must be at least 260"):
        hvt.train_tokenizer([multi30k_file("val.en")], vocab_size=100)


def test_train_from_texts():
    tok = hvt.train_tokenizer(texts=["ein hund", "a dog"] * 20, vocab_size=300)
    assert tok.decode(tok("ein hund").input_ids, skip_special_tokens=True) == "ein hund"
