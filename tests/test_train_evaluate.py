"""Tests of `train.evaluate` against sacreBLEU's own functions and hand computations."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import sacrebleu

from train.data import local_data_dir
from train.evaluate import moses_tokenize_lowercase, score, score_tokenized_lowercase, write_results

REFS = [
    "The cat sat on the mat.",
    "A man is riding a red bicycle down the street.",
    "Two children play football in the park, laughing.",
]
HYPS = [
    "The cat sat on a mat.",
    "A man rides a red bike down the road.",
    "Two kids are playing soccer in the park.",
]
MULTI30K = local_data_dir("multi30k")


def test_score_matches_sacrebleu_corpus_functions() -> None:
    result = score(HYPS, REFS, "en")
    bleu = sacrebleu.corpus_bleu(HYPS, [REFS])
    assert result["bleu"] == pytest.approx(bleu.score, abs=1e-12)
    assert result["bleu_precisions"] == pytest.approx(bleu.precisions)
    assert (result["hyp_len"], result["ref_len"]) == (bleu.sys_len, bleu.ref_len)
    assert result["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score, abs=1e-12)
    assert "tok:13a" in result["bleu_signature"] and "case:mixed" in result["bleu_signature"]
    assert result["chrf_signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0")
    assert 0 < result["bleu"] < 100 and result["num_sentences"] == 3


def test_perfect_and_empty_hypotheses() -> None:
    perfect = score(REFS, REFS, "en")
    assert perfect["bleu"] == pytest.approx(100) and perfect["chrf"] == pytest.approx(100)
    empty = score([""] * 3, REFS, "en")
    assert empty["bleu"] == 0 and empty["chrf"] == 0 and empty["hyp_len"] == 0


def test_chinese_is_scored_per_character() -> None:
    """One sentence: the `zh` tokenizer splits 我喜欢猫。 into 5 tokens; 4-gram precision is 0 and
    sacreBLEU's default `exp` smoothing replaces it by 1 / (2 * 2)."""
    result = score(["我喜欢猫。"], ["我喜欢狗。"], "zh")
    precisions = [4 / 5, 2 / 4, 1 / 3, 1 / (2 * 2)]
    assert result["bleu"] == pytest.approx(100 * math.exp(sum(map(math.log, precisions)) / 4))
    assert "tok:zh" in result["bleu_signature"]
    assert score(["我喜欢猫。"], ["我喜欢狗。"], "en")["bleu"] == 0  # 13a sees one token per sentence


def test_mismatched_or_empty_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="2 hypotheses but 3 references"):
        score(HYPS[:2], REFS, "en")
    with pytest.raises(ValueError, match="no hypotheses"):
        score([], [], "en")


def test_tokenized_lowercase_bleu(tmp_path: Path) -> None:
    refs_file = tmp_path / "test.en"
    refs_file.write_text("".join(line + "\n" for line in moses_tokenize_lowercase(REFS, "en")))
    assert moses_tokenize_lowercase(['A man\'s "red" bike.'], "en") == ["a man &apos;s &quot; red &quot; bike ."]
    assert score_tokenized_lowercase(REFS, refs_file)["bleu_tok_lc"] == pytest.approx(100)
    result = score_tokenized_lowercase(HYPS, refs_file)
    expected = sacrebleu.corpus_bleu(
        moses_tokenize_lowercase(HYPS, "en"), [refs_file.read_text().split("\n")[:-1]], tokenize="none"
    )
    assert result["bleu_tok_lc"] == pytest.approx(expected.score, abs=1e-12)
    assert "tok:none" in result["bleu_tok_lc_signature"]


@pytest.mark.skipif(MULTI30K is None, reason="no local Multi30k copy")
@pytest.mark.parametrize("lang", ["en", "de"])
def test_moses_pipeline_reproduces_multi30k_tok_files(lang: str) -> None:
    """The lowercase / normalize / tokenize pipeline turns the raw test set into `tok/` exactly,
    so scoring the raw references with `score_tokenized_lowercase` gives 100."""
    raw = (MULTI30K / f"test2016.{lang}").read_text(encoding="utf-8").split("\n")[:-1]
    tok = (MULTI30K / "tok" / f"test2016.{lang}").read_text(encoding="utf-8").split("\n")[:-1]
    assert moses_tokenize_lowercase(raw, lang) == tok
    assert score_tokenized_lowercase(raw, MULTI30K / "tok" / f"test2016.{lang}")["bleu_tok_lc"] == pytest.approx(100)


def test_pretokenized_hypotheses_are_scored_as_they_are(tmp_path: Path) -> None:
    """A model trained on the `tok/` text (`multi30k-lc-tok`) writes such text: scored as it is, its
    references score 100; tokenised a second time, their `&apos;` would be escaped again and lose n-grams."""
    refs_file = tmp_path / "test.en"
    tokenized = moses_tokenize_lowercase(['A man\'s "red" bike.', *REFS], "en")
    refs_file.write_text("".join(line + "\n" for line in tokenized))
    pretokenized = score_tokenized_lowercase(tokenized, refs_file, pretokenized=True)
    assert pretokenized["bleu_tok_lc"] == pytest.approx(100)
    assert pretokenized["bleu_tok_lc_signature"].endswith("|pre:none(model-outputs-lc-tok-text)")
    assert score_tokenized_lowercase(tokenized, refs_file)["bleu_tok_lc"] < 95
    hyps = moses_tokenize_lowercase(["A man's red bike.", *HYPS], "en")
    expected = sacrebleu.corpus_bleu(hyps, [tokenized], tokenize="none")
    assert score_tokenized_lowercase(hyps, refs_file, pretokenized=True)["bleu_tok_lc"] == pytest.approx(expected.score)


def test_write_results_round_trips_json(tmp_path: Path) -> None:
    results = score(["我喜欢猫。"], ["我喜欢狗。"], "zh")
    path = write_results(tmp_path / "nested" / "results.json", results)
    assert json.loads(path.read_text(encoding="utf-8")) == results
