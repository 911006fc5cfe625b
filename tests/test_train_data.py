"""Tests of `train.data`: loading, validation, tokenization and length filtering of parallel data."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import datasets
import pytest
from datasets import Dataset, DatasetDict

from tests._tiny_tokenizer import tiny_tokenizer
from train import data
from train.data import (
    DataError,
    column_lengths,
    example_lengths,
    filter_by_length,
    load_corpus,
    load_parallel,
    load_split,
    multi30k,
    published_split_name,
    tokenize_dataset,
    tokenized_references,
)

PAIRS = [("Ein Hund läuft.", "A dog runs."), ("Zwei Katzen schlafen.", "Two cats sleep."), ("Hallo!", "Hello!")]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def text_dir(tmp_path: Path) -> Path:
    """`train` and `dev` splits of aligned de/en files, with the whitespace quirks of Multi30k."""
    write_lines(tmp_path / "train.de", [f"{de} " if i == 0 else f"\u00a0{de}\t" for i, (de, _) in enumerate(PAIRS)])
    write_lines(tmp_path / "train.en", [en for _, en in PAIRS])
    write_lines(tmp_path / "dev.de", ["Guten Morgen."])
    write_lines(tmp_path / "dev.en", ["Good morning."])
    return tmp_path


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def test_text_dir_discovers_splits_and_strips_whitespace(text_dir: Path) -> None:
    dsdict = load_parallel(text_dir, "de", "en")
    assert sorted(dsdict) == ["dev", "train"]
    assert dsdict["train"]["src"] == [de for de, _ in PAIRS]
    assert dsdict["train"]["tgt"] == [en for _, en in PAIRS]
    assert dsdict["train"]["id"] == [0, 1, 2]
    reverse = load_parallel(str(text_dir), "en", "de", splits={"validation": "dev"})
    assert list(reverse) == ["validation"]
    assert reverse["validation"][0] == {"id": 0, "src": "Good morning.", "tgt": "Guten Morgen."}


def test_misaligned_files_name_both_files_and_counts(text_dir: Path) -> None:
    write_lines(text_dir / "train.en", ["A dog runs.", "Two cats sleep."])
    with pytest.raises(DataError, match=r"train\.de has 3 lines but .*train\.en has 2"):
        load_parallel(text_dir, "de", "en")


def test_empty_line_names_file_and_line(text_dir: Path) -> None:
    write_lines(text_dir / "train.en", ["A dog runs.", "  ", "Hello!"])
    with pytest.raises(DataError, match=r"train\.en: 1 empty text\(s\), first at line 2"):
        load_parallel(text_dir, "de", "en")


def test_missing_file_unknown_language_and_split(text_dir: Path) -> None:
    (text_dir / "dev.en").unlink()
    with pytest.raises(DataError, match=r"missing file: .*dev\.en"):
        load_parallel(text_dir, "de", "en")
    with pytest.raises(DataError, match=r"no '\*\.fr' files .*languages found: de, en"):
        load_parallel(text_dir, "de", "fr")
    with pytest.raises(DataError, match=r"no split\(s\) \['test'\]; available: \['dev', 'train'\]"):
        load_parallel(text_dir, "de", "en", splits=["test"])
    with pytest.raises(DataError, match="does not exist"):
        load_parallel(text_dir / "nowhere", "de", "en")


def test_empty_split_is_an_error(text_dir: Path) -> None:
    (text_dir / "dev.de").write_text("")
    (text_dir / "dev.en").write_text("")
    with pytest.raises(DataError, match=r"dev\.de is empty"):
        load_parallel(text_dir, "de", "en")


def test_tsv_with_header_positional_and_extra_columns(tmp_path: Path) -> None:
    header = write_lines(tmp_path / "h.tsv", ["en\tde", *[f"{en}\t{de}" for de, en in PAIRS]])
    dsdict = load_parallel(header, "de", "en")
    assert list(dsdict) == ["train"]
    assert dsdict["train"]["src"] == [de for de, _ in PAIRS]
    positional = write_lines(tmp_path / "p.tsv", [f"{en}\t{de}\tCC-BY attribution" for de, en in PAIRS])
    dsdict = load_parallel(str(positional), "de", "en", tsv_columns=["en", "de", "credit"])
    assert dsdict["train"]["tgt"] == [en for _, en in PAIRS]
    default_order = load_parallel(positional, "en", "de")  # headerless: columns default to (src, tgt)
    assert default_order["train"]["src"] == [en for _, en in PAIRS]


def test_tsv_errors_name_file_and_line(tmp_path: Path) -> None:
    short = write_lines(tmp_path / "s.tsv", ["de\ten", "Hallo\tHello", "Nur Deutsch"])
    with pytest.raises(DataError, match=r"s\.tsv:3: expected 2 tab-separated fields"):
        load_parallel(short, "de", "en")
    blank_field = write_lines(tmp_path / "b.tsv", ["de\ten", "Hallo\tHello", "Tschüss\t "])
    with pytest.raises(DataError, match=r"b\.tsv column 'en': 1 empty text\(s\), first at line 3"):
        load_parallel(blank_field, "de", "en")
    with pytest.raises(DataError, match=r"no column 'fr'; columns are \['de', 'en'\]"):
        load_parallel(short, "de", "fr", tsv_columns=["de", "en"])


def test_jsonl_flat_and_translation_layouts(tmp_path: Path) -> None:
    flat = write_lines(tmp_path / "flat.jsonl", [json.dumps({"de": de, "en": en}) for de, en in PAIRS])
    nested = write_lines(
        tmp_path / "nested.jsonl", [json.dumps({"translation": {"de": de, "en": en}}) for de, en in PAIRS]
    )
    dsdict = load_parallel({"train": flat, "validation": nested}, "en", "de")
    for split in ("train", "validation"):
        assert dsdict[split]["src"] == [en for _, en in PAIRS]
        assert dsdict[split]["tgt"] == [de for de, _ in PAIRS]


def test_jsonl_errors_name_file_line_and_keys(tmp_path: Path) -> None:
    bad_key = write_lines(tmp_path / "k.jsonl", [json.dumps({"de": "Hallo", "en": "Hello"}), json.dumps({"de": "x"})])
    with pytest.raises(DataError, match=r"k\.jsonl:2: no string under key 'en'; keys are \['de'\]"):
        load_parallel(bad_key, "de", "en")
    blank = write_lines(tmp_path / "e.jsonl", [json.dumps({"de": "Hallo", "en": "Hello"}), ""])
    with pytest.raises(DataError, match=r"e\.jsonl:2: empty line"):
        load_parallel(blank, "de", "en")


def test_hub_id_is_routed_to_load_dataset_and_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    """Both Hub layouts: flat language columns (bentrevett/multi30k) and a WMT `translation` dict."""
    flat = DatasetDict({"train": Dataset.from_dict({"en": ["A dog. "], "de": ["Ein Hund."]})})
    wmt = DatasetDict({"validation": Dataset.from_dict({"translation": [{"de": "Ein Hund.", "en": " A dog."}]})})
    calls = []

    def fake_load_dataset(name: str, config: str | None) -> DatasetDict:
        calls.append((name, config))
        return {"owner/flat": flat, "wmt/wmt14": wmt}[name]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    for name, config, split in (("owner/flat", None, "train"), ("wmt/wmt14", "de-en", "validation")):
        dsdict = load_parallel(name, "de", "en", hub_config=config)
        assert dsdict[split][0] == {"id": 0, "src": "Ein Hund.", "tgt": "A dog."}
    assert calls == [("owner/flat", None), ("wmt/wmt14", "de-en")]
    with pytest.raises(DataError, match=r"wmt/wmt14\[validation\]: no language 'fr'; available: \['de', 'en'\]"):
        load_parallel("wmt/wmt14", "de", "fr")


def test_multi30k_prefers_local_copy_then_hub(text_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for stem in ("val", "test2016"):
        for lang in ("de", "en"):
            (text_dir / f"{stem}.{lang}").write_text((text_dir / f"dev.{lang}").read_text())
    dsdict = multi30k("de", "en", data_dir=text_dir)
    assert list(dsdict) == ["train", "validation", "test"]
    monkeypatch.setenv("HVT_MULTI30K_DIR", str(text_dir))
    assert multi30k()["train"]["src"] == dsdict["train"]["src"]
    with pytest.raises(DataError, match="does not exist"):
        multi30k(data_dir=text_dir / "missing")

    monkeypatch.delenv("HVT_MULTI30K_DIR")
    monkeypatch.setattr(data, "local_data_dir", lambda name: None)
    hub = DatasetDict({split: Dataset.from_dict({"en": ["A dog."], "de": ["Ein Hund."]}) for split in dsdict})
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config: hub if name == "bentrevett/multi30k" else None)
    assert list(multi30k()) == ["train", "validation", "test"]


def multi30k_copy(folder: Path, text_dir: Path) -> Path:
    """A Multi30k-shaped folder (`train`, `val`, `test2016`) with `tok/` references of test2016."""
    folder.mkdir()
    for stem, source in (("train", "train"), ("val", "dev"), ("test2016", "dev")):
        for lang in ("de", "en"):
            (folder / f"{stem}.{lang}").write_text((text_dir / f"{source}.{lang}").read_text())
    (folder / "tok").mkdir()
    (folder / "tok" / "test2016.en").write_text("good morning .\n")
    return folder


def test_load_corpus_and_load_split_know_every_source(text_dir: Path, tmp_path: Path, monkeypatch) -> None:
    copy = multi30k_copy(tmp_path / "m30k", text_dir)
    monkeypatch.setenv("HVT_MULTI30K_DIR", str(copy))
    assert list(load_corpus("multi30k", "de", "en")) == ["train", "validation", "test"]
    assert load_split("multi30k", "de", "en", "test")["src"] == ["Guten Morgen."]
    assert load_split(str(text_dir), "de", "en", "dev")["tgt"] == ["Good morning."]
    tsv = write_lines(tmp_path / "pairs.tsv", ["de\ten", *[f"{de}\t{en}" for de, en in PAIRS]])
    assert load_split(str(tsv), "de", "en", "train")["src"] == [de for de, _ in PAIRS]
    with pytest.raises(DataError, match=r"dataset 'multi30k' has no split\(s\) \['tst2016'\]; available: \['test', "):
        load_split("multi30k", "de", "en", "tst2016")
    with pytest.raises(DataError, match=r"data_dir .* only applies to the named data sets 'multi30k' and 'tatoeba-"):
        load_corpus(str(text_dir), "de", "en", data_dir=copy)


def test_multi30k_tokenized_references_follow_the_copy_that_is_read(text_dir: Path, tmp_path: Path, monkeypatch):
    """The `tok/` references come from the same folder as the text: data_dir, else $HVT_MULTI30K_DIR."""
    copy = multi30k_copy(tmp_path / "m30k", text_dir)
    monkeypatch.setenv("HVT_MULTI30K_DIR", str(copy))
    assert tokenized_references("multi30k", "test", "en") == copy / "tok" / "test2016.en"
    assert tokenized_references("multi30k", "test", "de") is None  # no such file
    assert tokenized_references("multi30k", "validation", "en") is None
    assert tokenized_references(str(copy), "test", "en") is None  # a plain folder has no known tok/ layout
    other = multi30k_copy(tmp_path / "other", text_dir)
    assert tokenized_references("multi30k", "test", "en", data_dir=other) == other / "tok" / "test2016.en"
    monkeypatch.setenv("HVT_MULTI30K_DIR", str(tmp_path / "missing"))
    with pytest.raises(DataError, match=r"missing' \(\$HVT_MULTI30K_DIR\) does not exist"):
        tokenized_references("multi30k", "test", "en")


def test_multi30k_lc_tok_reads_the_tok_folder_of_the_same_copy(text_dir: Path, tmp_path: Path, monkeypatch):
    """`multi30k-lc-tok` is the `tok/` text of the copy `multi30k` reads, with the same splits and references;
    without a `tok/` folder it is an error naming the folder (there is no Hub copy of it)."""
    copy = multi30k_copy(tmp_path / "m30k", text_dir)
    (copy / "tok" / "test2016.en").unlink()
    for stem in ("train", "val", "test2016"):
        for lang in ("de", "en"):
            lines = (copy / f"{stem}.{lang}").read_text().lower().replace(".", " .")
            (copy / "tok" / f"{stem}.{lang}").write_text(lines)
    monkeypatch.setenv("HVT_MULTI30K_DIR", str(copy))
    corpus = load_corpus("multi30k-lc-tok", "de", "en")
    assert list(corpus) == ["train", "validation", "test"]
    assert corpus["test"]["src"] == ["guten morgen ."] and corpus["test"]["tgt"] == ["good morning ."]
    assert tokenized_references("multi30k-lc-tok", "test", "en") == copy / "tok" / "test2016.en"
    scoring = data.lowercased_tokenized_scoring("multi30k-lc-tok", "test", "en")
    assert scoring == data.LowercasedTokenizedReferences(copy / "tok" / "test2016.en", output_is_tokenized=True)
    raw_text_scoring = data.lowercased_tokenized_scoring("multi30k", "test", "en")
    assert raw_text_scoring == data.LowercasedTokenizedReferences(
        copy / "tok" / "test2016.en", output_is_tokenized=False
    )
    assert data.lowercased_tokenized_scoring(str(copy), "test", "en") is None  # a plain folder: no known tok/ layout
    assert data.is_lowercased_tokenized("multi30k-lc-tok") and not data.is_lowercased_tokenized("multi30k")
    assert published_split_name("multi30k-lc-tok", "test") == "test_2016_flickr"
    bare = multi30k_copy(tmp_path / "bare", text_dir)
    for path in (bare / "tok").iterdir():
        path.unlink()
    (bare / "tok").rmdir()
    with pytest.raises(DataError, match=r"'multi30k-lc-tok' reads the upstream tok/ files, and .*bare/tok does not"):
        load_corpus("multi30k-lc-tok", "de", "en", data_dir=bare)


def test_published_split_names() -> None:
    assert published_split_name("multi30k", "test") == "test_2016_flickr"
    assert published_split_name("multi30k", "validation") == "val"
    assert published_split_name("path/to/data", "test") == "test"


def test_local_data_dir_uses_env_then_repo_sibling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "corpus").mkdir()
    monkeypatch.setenv("HVT_DATA_DIR", str(tmp_path))
    assert data.local_data_dir("corpus") == tmp_path / "corpus"
    monkeypatch.setattr(data, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.delenv("HVT_DATA_DIR")
    assert data.local_data_dir("corpus") is None
    (tmp_path / "shared" / "data" / "corpus").mkdir(parents=True)
    assert data.local_data_dir("corpus") == tmp_path / "shared" / "data" / "corpus"


@pytest.mark.skipif(data.local_data_dir("multi30k") is None, reason="no local Multi30k copy")
def test_real_multi30k_sizes_and_stripping() -> None:
    dsdict = multi30k("de", "en")
    assert {split: len(ds) for split, ds in dsdict.items()} == {"train": 29000, "validation": 1014, "test": 1000}
    for text in dsdict["train"]["src"]:
        assert text == text.strip() and text


def test_tokenize_dataset_matches_tokenizer_and_caches(text_dir: Path, tokenizer, tmp_path: Path) -> None:
    dsdict = load_parallel(text_dir, "de", "en")
    cache = tmp_path / "cache"
    tokenized = tokenize_dataset(dsdict, tokenizer, cache_dir=cache)
    train = tokenized["train"]
    for row, (de, en) in zip(train, PAIRS, strict=True):
        assert row["input_ids"] == tokenizer(de)["input_ids"]
        assert row["labels"] == tokenizer(en)["input_ids"]
        assert row["input_ids"][-1] == row["labels"][-1] == tokenizer.eos_token_id == 2
        assert row["attention_mask"] == [1] * len(row["input_ids"])
        assert (row["src_len"], row["tgt_len"]) == (len(row["input_ids"]), len(row["labels"]))
    files = sorted(path.name for path in cache.glob("tokenized-*.arrow"))
    assert len(files) == 2 and files[0].startswith("tokenized-dev-")
    again = tokenize_dataset(dsdict, tokenizer, cache_dir=cache)
    assert again["train"].cache_files == train.cache_files
    assert sorted(path.name for path in cache.glob("tokenized-*.arrow")) == files


def test_filter_by_length_reports_drops(text_dir: Path, tokenizer, caplog: pytest.LogCaptureFixture) -> None:
    train = tokenize_dataset(load_parallel(text_dir, "de", "en"), tokenizer)["train"]
    limit = sorted(train["src_len"])[1]  # keeps the two shortest sources (lengths are distinct here)
    expected = [i for i, (s, t) in enumerate(zip(train["src_len"], train["tgt_len"], strict=True)) if s <= limit]
    with caplog.at_level(logging.INFO, logger="train.data"):
        kept, dropped = filter_by_length(train, limit, max(train["tgt_len"]))
    assert kept["id"] == expected and dropped == len(train) - len(expected) == 1
    assert "dropped 1 of 3 pairs" in caplog.text
    with pytest.raises(DataError, match="dropped all 3 pairs"):
        filter_by_length(train, 1, 1)
    with pytest.raises(DataError, match="run tokenize_dataset first"):
        filter_by_length(load_parallel(text_dir, "de", "en")["train"], 10, 10)


def test_example_lengths_from_length_columns_or_token_lists(text_dir: Path, tokenizer) -> None:
    train = tokenize_dataset(load_parallel(text_dir, "de", "en"), tokenizer)["train"]
    src, tgt = example_lengths(train)
    assert src.tolist() == list(train["src_len"]) and tgt.tolist() == list(train["tgt_len"])
    without = train.remove_columns(["src_len", "tgt_len"]).select([2, 0])  # an indices mapping, reordered
    src, tgt = example_lengths(without)
    assert src.tolist() == [len(ids) for ids in without["input_ids"]]
    assert tgt.tolist() == [len(ids) for ids in without["labels"]]
    assert column_lengths(without, "id").tolist() == [2, 0]
    with pytest.raises(DataError, match="cannot find example lengths"):
        example_lengths(train.select_columns(["src", "tgt"]))


def test_data_arguments_read_back_as_one_split(text_dir: Path) -> None:
    """The commands' shared options (`add_data_arguments`): defaults, and the split they name loaded."""
    parser = argparse.ArgumentParser()
    data.add_data_arguments(parser, split="validation")
    defaults = parser.parse_args([])
    assert (defaults.dataset, defaults.data_dir, defaults.src_lang, defaults.tgt_lang, defaults.split) == (
        "multi30k",
        None,
        "de",
        "en",
        "validation",
    )
    args = parser.parse_args(["--dataset", str(text_dir), "--split", "train", "--src-lang", "en", "--tgt-lang", "de"])
    split = data.load_split_from_arguments(args)
    assert split["src"] == [en for _, en in PAIRS] and split["tgt"] == [de for de, _ in PAIRS]
    with pytest.raises(DataError, match=r"no split\(s\) \['nope'\]; available: \['dev', 'train'\]"):
        data.load_split_from_arguments(parser.parse_args(["--dataset", str(text_dir), "--split", "nope"]))


def test_data_arguments_can_join_a_required_group() -> None:
    """`train_tokenizer`: `--dataset` or `--files`, one of them required, so `--dataset` has no default there."""
    parser = argparse.ArgumentParser()
    source = parser.add_mutually_exclusive_group(required=True)
    data.add_data_arguments(parser, split="train", dataset_group=source)
    source.add_argument("--files", nargs="+")
    assert parser.parse_args(["--files", "a.txt"]).dataset is None
    assert parser.parse_args(["--dataset", "multi30k"]).split == "train"
    with pytest.raises(SystemExit):
        parser.parse_args([])
    with pytest.raises(SystemExit):
        parser.parse_args(["--dataset", "multi30k", "--files", "a.txt"])
