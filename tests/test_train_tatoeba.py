"""Tatoeba cmn-eng: the named data set is found like Multi30k (data_dir, env var, beside the repository) or
fails saying where to put it; the recipe's settings train on it, score Chinese output with sacreBLEU's `zh`
tokenizer and write a card with the right languages; the byte-level BPE segments Chinese losslessly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU

import hf_vanilla_transformer as hvt
from tests.helpers import SHARED_DATA
from tests.train_helpers import TINY_MODEL, one_thread  # noqa: F401 (autouse fixture)
from train import data
from train.config import TrainConfig
from train.data import TATOEBA_ENV, DataError, load_corpus
from train.recipe import SETTINGS
from train.train import train
from train.vocabulary_stats import segmentation_stats

TATOEBA = SHARED_DATA / "tatoeba-cmn-eng"
needs_tatoeba = pytest.mark.skipif(not TATOEBA.is_dir(), reason="needs ../shared/data/tatoeba-cmn-eng")


def write_tatoeba_slice(folder: Path, sizes=(("train", 300), ("valid", 30), ("test", 20))) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in sizes:
        for lang in ("en", "zh"):
            lines = (TATOEBA / f"{split}.{lang}").read_text(encoding="utf-8").splitlines()[-n:]  # the longer ones
            (folder / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@needs_tatoeba
def test_the_local_copy_has_the_documented_splits():
    corpus = load_corpus("tatoeba-cmn-eng", "zh", "en")
    assert {split: len(corpus[split]) for split in corpus} == {"train": 30028, "validation": 1000, "test": 1000}
    first_test_en = (TATOEBA / "test.en").read_text(encoding="utf-8").splitlines()[0]
    assert corpus["test"][0]["tgt"] == first_test_en


@needs_tatoeba
def test_data_dir_then_the_environment_then_beside_the_repository(tmp_path, monkeypatch):
    given = write_tatoeba_slice(tmp_path / "given")
    env = write_tatoeba_slice(tmp_path / "env", sizes=(("train", 5), ("valid", 2), ("test", 2)))
    monkeypatch.setenv(TATOEBA_ENV, str(env))
    assert len(load_corpus("tatoeba-cmn-eng", "en", "zh", data_dir=given)["train"]) == 300
    assert len(load_corpus("tatoeba-cmn-eng", "en", "zh")["train"]) == 5
    monkeypatch.setenv(TATOEBA_ENV, str(tmp_path / "missing"))
    with pytest.raises(DataError, match=rf"'{tmp_path / 'missing'}' \(\${TATOEBA_ENV}\) does not exist"):
        load_corpus("tatoeba-cmn-eng", "en", "zh")


def test_without_a_local_copy_the_error_says_where_to_put_it(monkeypatch):
    monkeypatch.delenv(TATOEBA_ENV, raising=False)
    monkeypatch.setattr(data, "local_data_dir", lambda name: None)
    with pytest.raises(DataError, match=r"no local copy found\. Put the files \{train,valid,test\}\.\{en,zh\} in"):
        load_corpus("tatoeba-cmn-eng", "zh", "en")


@pytest.mark.parametrize(("setting", "src", "tgt"), [("tatoeba-zh-en", "zh", "en"), ("tatoeba-en-zh", "en", "zh")])
def test_settings_name_the_corpus_and_its_direction(setting, src, tgt):
    cfg = TrainConfig.load(SETTINGS[setting])
    assert (cfg.dataset, cfg.src_lang, cfg.tgt_lang) == ("tatoeba-cmn-eng", src, tgt)
    assert cfg.output_dir == f"runs/{setting}" and cfg.eval_split == "validation" and cfg.test_split == "test"


@needs_tatoeba
def test_byte_level_bpe_segments_chinese_losslessly():
    lines = (TATOEBA / "train.zh").read_text(encoding="utf-8").splitlines()[:3000]
    english = (TATOEBA / "train.en").read_text(encoding="utf-8").splitlines()[:3000]
    tokenizer = hvt.train_tokenizer(texts=lines + english, vocab_size=1000)
    sentence = "我们明天去公园吧。"
    ids = tokenizer(sentence)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == sentence and 3 not in ids  # no <unk>
    # A character that no merge covers becomes its 3 UTF-8 bytes, none of which decodes on its own.
    rare = "龘"
    pieces = [tokenizer.decode([i]) for i in tokenizer(rare, add_special_tokens=False)["input_ids"]]
    assert "".join(pieces) == "\ufffd" * 3 and tokenizer.decode(tokenizer(rare)["input_ids"][:-1]) == rare
    stats = segmentation_stats(tokenizer, [rare, "我"])
    assert stats["tokens_per_sentence"] == pytest.approx((3 + 1) / 2)
    assert stats["partial_character_tokens"] == pytest.approx(3 / 4)


@needs_tatoeba
def test_an_english_to_chinese_run_scores_with_the_zh_tokenizer_and_writes_its_card(tmp_path, monkeypatch):
    monkeypatch.setenv(TATOEBA_ENV, str(write_tatoeba_slice(tmp_path / "data")))
    overrides = {
        "vocab_size": 600,
        "model": TINY_MODEL,
        "max_tokens": 600,
        "warmup_steps": 4,
        "max_steps": 6,
        "max_train_minutes": None,
        "eval_steps": 6,
        "save_steps": 3,
        "average_last": 2,
        "tune_num_beams": [1, 2],  # the setting tunes its decoding on validation: here on 30 pairs
        "tune_length_penalties": [1.0],
        "max_eval_samples": 10,
        "precision": "fp32",
        "num_threads": 1,
        "output_dir": str(tmp_path / "run"),
    }
    summary = train(TrainConfig.load(SETTINGS["tatoeba-en-zh"], overrides))
    test = summary["test"]
    assert "tok:zh" in test["bleu_signature"] and test["num_sentences"] == 20
    hypotheses = (tmp_path / "run" / "model" / "hyp.test.zh").read_text(encoding="utf-8").split("\n")[:-1]
    references = (tmp_path / "data" / "test.zh").read_text(encoding="utf-8").splitlines()
    assert test["bleu"] == pytest.approx(BLEU(tokenize="zh").corpus_score(hypotheses, [references]).score)
    card = (tmp_path / "run" / "model" / "README.md").read_text(encoding="utf-8")
    assert "language:\n- en\n- zh\n" in card and "- en-zh\n" in card
    assert test["bleu_signature"] in card and "CC BY 2.0 France" in card and "English → Chinese" in card
    assert "characters as words (`zh` tokenizer)" in card
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["test"]["language_pair"] == "en-zh"
    assert [row["num_beams"] for row in saved["decoding_tuning"]["grid"]] == [1, 2]  # chosen on validation
    assert all("tok:zh" in row["bleu_signature"] for row in saved["decoding_tuning"]["grid"])
