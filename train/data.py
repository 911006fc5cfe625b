"""Parallel corpora as `datasets.DatasetDict`s with `id`, `src` and `tgt` columns.

This is the one module that knows where data come from: `load_corpus(dataset, ...)` takes what a
training config or a command line names as `dataset` (`multi30k`, a folder, a TSV or JSON-lines
file, a Hub id) and `load_split` one split of it; the command-line tools only pass their arguments on.

The paper trains on WMT 2014 English-German and English-French sentence pairs (§5.1 "Training Data
and Batching"); this project trains on the smaller Multi30k and Tatoeba corpora as well. Whatever
the source, `load_parallel` returns the same layout and validates it *before* training starts, so
a misaligned or empty line fails with the file and line number instead of hours into a run:

| source                                   | example                                          |
|------------------------------------------|--------------------------------------------------|
| directory of aligned `{split}.{lang}`    | `.../multi30k` holding `train.de`, `train.en`... |
| TSV file (one split, `train`)            | `all.tsv`, header `de<TAB>en` or positional      |
| JSON-lines file (one split, `train`)     | `{"de": ..., "en": ...}` or `{"translation": {...}}` |
| dict split -> TSV / JSON-lines file      | `{"train": "a.tsv", "validation": "b.jsonl"}`    |
| Hugging Face Hub dataset id              | `bentrevett/multi30k`, `wmt/wmt14` (needs internet) |
| `multi30k` (`load_corpus` only)          | the local copy if found, else the Hub (`multi30k`) |
| `multi30k-lc-tok` (`load_corpus` only)   | the local copy's `tok/` text: lowercased, Moses-tokenised |
| `tatoeba-cmn-eng` (`load_corpus` only)   | the local copy (`tatoeba_cmn_eng`); no Hub fallback |

Every text is stripped of surrounding whitespace (Multi30k has trailing spaces, tabs and
non-breaking spaces). The `id` column is the 0-based line or row number within its split.

Tokenization (`tokenize_dataset`) never truncates; long pairs are dropped from the *training* set
by `filter_by_length`, which reports how many it dropped. Test sets should not be filtered: every
reference sentence counts in BLEU.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset, DatasetDict
from datasets.fingerprint import Hasher
from transformers import PreTrainedTokenizerBase

from train.lines import NotUTF8Error, read_lines

logger = logging.getLogger(__name__)

MULTI30K_HUB_ID = "bentrevett/multi30k"
MULTI30K_LC_TOK = "multi30k-lc-tok"
"""Multi30k's upstream `tok/` text (lowercased, punctuation-normalised, Moses-tokenised, XML-escaped), the
text most published Multi30k systems train and score on. Models trained on it output such text."""
MULTI30K_NAMES = ("multi30k", MULTI30K_LC_TOK)


@dataclass(frozen=True)
class Multi30kSplit:
    stem: str
    """File stem in the local copy (`test2016.de`) and in its `tok/` folder of tokenised references."""
    name: str
    """The set's name upstream (model cards, results tables)."""


MULTI30K_SPLITS = {
    "train": Multi30kSplit("train", "train"),
    "validation": Multi30kSplit("val", "val"),
    "test": Multi30kSplit("test2016", "test_2016_flickr"),
}
"""The splits `multi30k` returns (the Hub copy's names) and what they are in the upstream files."""

TSV_SUFFIXES = (".tsv",)
JSONL_SUFFIXES = (".jsonl", ".json")
REPO_ROOT = Path(__file__).resolve().parents[1]

Splits = Sequence[str] | Mapping[str, str] | None
"""A list of split names to keep, or a mapping output name -> name in the source."""


class DataError(ValueError):
    """A parallel corpus is missing, misaligned, empty or lacks a language."""


# ---- Public API -------------------------------------------------------------------------------


def load_parallel(
    source: str | Path | Mapping[str, str | Path],
    src_lang: str,
    tgt_lang: str,
    splits: Splits = None,
    *,
    tsv_columns: Sequence[str] | None = None,
    hub_config: str | None = None,
) -> DatasetDict:
    """Load a parallel corpus into a `DatasetDict` with columns `id`, `src`, `tgt`.

    Args:
        source: a directory of aligned `{split}.{lang}` text files, a TSV or JSON-lines file, a
            dict split -> such file, or a Hub dataset id (see the module docstring). A `Path`
            is always local; a string is local when it exists or looks like a file path.
        src_lang / tgt_lang: language codes, used as file suffixes, TSV header names, JSON keys
            or dataset columns.
        splits: `None` keeps every split found; a list keeps those; a mapping renames
            (`{"validation": "val"}` loads `val.*` as `validation`).
        tsv_columns: names of the columns of a TSV file *without* a header row (extra columns,
            such as Tatoeba's attribution, are ignored). Default: `(src_lang, tgt_lang)`.
            A first row containing both language codes is taken as the header.
        hub_config: configuration name of a Hub dataset, e.g. `"de-en"` for `wmt/wmt14`.

    Raises:
        DataError: missing file, unknown language or split, misaligned line counts, empty line
            or empty split; the message names the file (or dataset) and line.
    """
    if src_lang == tgt_lang:
        raise DataError(f"src_lang and tgt_lang are both {src_lang!r}")
    if isinstance(source, Mapping):
        files = {split: Path(path) for split, path in source.items()}
        return _load_files(_select_splits(files, splits, "the given files"), src_lang, tgt_lang, tsv_columns)
    if isinstance(source, Path) or _looks_local(source):
        path = Path(source)
        if path.is_dir():
            return _load_text_dir(path, src_lang, tgt_lang, splits)
        if path.is_file():
            return _load_files(_select_splits({"train": path}, splits, str(path)), src_lang, tgt_lang, tsv_columns)
        raise DataError(f"data source {str(path)!r} does not exist")
    return _load_hub(source, hub_config, src_lang, tgt_lang, splits)


def local_data_dir(name: str) -> Path | None:
    """The local copy of data set `name`, or `None`.

    Looked up in `$HVT_DATA_DIR/<name>`, then in `shared/data/<name>` beside the repository
    (`Path(repo_root).parent / "shared" / "data" / name`).
    """
    candidates = [Path(os.environ["HVT_DATA_DIR"]) / name] if os.environ.get("HVT_DATA_DIR") else []
    candidates.append(REPO_ROOT.parent / "shared" / "data" / name)
    return next((path for path in candidates if path.is_dir()), None)


def load_corpus(dataset: str, src_lang: str, tgt_lang: str, *, data_dir: str | Path | None = None) -> DatasetDict:
    """Every split of `dataset`: a named data set (`"multi30k"`, `"tatoeba-cmn-eng"`, which read
    `data_dir`; `"multi30k-lc-tok"` is Multi30k's lowercased, tokenised text) or any source
    `load_parallel` reads (a folder, a TSV or JSON-lines file, a Hub id)."""
    if dataset in MULTI30K_NAMES:
        return multi30k(src_lang, tgt_lang, data_dir=data_dir, lowercased_tokenized=dataset == MULTI30K_LC_TOK)
    if dataset == TATOEBA_CMN_ENG:
        return tatoeba_cmn_eng(src_lang, tgt_lang, data_dir=data_dir)
    if data_dir is not None:
        raise DataError(
            f"data_dir ({str(data_dir)!r}) only applies to the named data sets 'multi30k' and "
            f"{TATOEBA_CMN_ENG!r}; for dataset {dataset!r} name the folder or file as the dataset itself"
        )
    return load_parallel(dataset, src_lang, tgt_lang)


DATASET_HELP = (
    f"multi30k, {MULTI30K_LC_TOK} (its lowercased, tokenised text), tatoeba-cmn-eng, a data folder, a TSV or "
    "JSON-lines file, or a Hub dataset id"
)


def add_data_arguments(
    parser: argparse.ArgumentParser,
    *,
    split: str,
    split_help: str | None = None,
    dataset_group: argparse._MutuallyExclusiveGroup | None = None,
) -> None:
    """The options of every command that reads one split of parallel text: `--dataset`, `--data-dir`,
    `--src-lang`, `--tgt-lang` and `--split` (default `split`), read back by `load_split_from_arguments`.
    `dataset_group`: a required group `--dataset` joins (it then has no default)."""
    if dataset_group is None:
        parser.add_argument("--dataset", default="multi30k", help=DATASET_HELP + " (default: multi30k)")
    else:
        dataset_group.add_argument("--dataset", help=DATASET_HELP)
    parser.add_argument(
        "--data-dir",
        default=None,
        help="the folder of a named data set's local copy (default: $HVT_DATA_DIR/<name> or ../shared/data/<name>)",
    )
    parser.add_argument("--src-lang", default="de")
    parser.add_argument("--tgt-lang", default="en")
    parser.add_argument("--split", default=split, help=split_help)


def load_split_from_arguments(args: argparse.Namespace) -> Dataset:
    """`load_split` of the options `add_data_arguments` added."""
    return load_split(args.dataset, args.src_lang, args.tgt_lang, args.split, data_dir=args.data_dir)


def load_split(
    dataset: str, src_lang: str, tgt_lang: str, split: str, *, data_dir: str | Path | None = None
) -> Dataset:
    """One split of `load_corpus(dataset, ...)`; an unknown split is an error listing the available ones."""
    corpus = load_corpus(dataset, src_lang, tgt_lang, data_dir=data_dir)
    check_splits(corpus, [split], dataset)
    return corpus[split]


def check_splits(corpus: DatasetDict, splits: Iterable[str | None], dataset: str) -> None:
    """Fail, listing the available splits, if one of `splits` (None entries are skipped) is missing."""
    missing = [split for split in splits if split is not None and split not in corpus]
    if missing:
        raise DataError(f"dataset {dataset!r} has no split(s) {missing}; available: {sorted(corpus)}")


def multi30k_dir(data_dir: str | Path | None = None) -> Path | None:
    """The folder of the local Multi30k copy that `multi30k` reads, or `None` (it then uses the Hub).

    The first of: `data_dir`; `$HVT_MULTI30K_DIR`; `local_data_dir("multi30k")`. A folder named by
    `data_dir` or `$HVT_MULTI30K_DIR` must exist.
    """
    for directory, where in ((data_dir, "data_dir"), (os.environ.get("HVT_MULTI30K_DIR") or None, "$HVT_MULTI30K_DIR")):
        if directory is not None:
            if not Path(directory).is_dir():
                raise DataError(f"Multi30k directory {str(directory)!r} ({where}) does not exist")
            return Path(directory)
    return local_data_dir("multi30k")


def multi30k(
    src_lang: str = "de",
    tgt_lang: str = "en",
    data_dir: str | Path | None = None,
    *,
    lowercased_tokenized: bool = False,
) -> DatasetDict:
    """Multi30k (WMT16 multimodal task 1) with splits `train` / `validation` / `test`.

    With `lowercased_tokenized` the text is the local copy's `tok/` folder (upstream's
    `<split>.lc.norm.tok.<lang>`: lowercased, punctuation-normalised, Moses-tokenised and XML-escaped),
    which most published Multi30k systems train on; there is no Hub copy of it.

    `test` is test_2016_flickr (1000 pairs). The data are read from the first of:

    1. `data_dir`, if given (an error if it does not exist);
    2. `$HVT_MULTI30K_DIR`, if set (an error if it does not exist);
    3. `local_data_dir("multi30k")`: `$HVT_DATA_DIR/multi30k` or `../shared/data/multi30k`
       beside the repository (files `train`, `val`, `test2016` `.{en,de,fr,cs}`);
    4. the Hub dataset `bentrevett/multi30k` (en/de only; needs internet), whose text may differ
       from the upstream files in whitespace only.
    """
    directory = multi30k_dir(data_dir)
    if lowercased_tokenized:
        if directory is None or not (directory / "tok").is_dir():
            where = f"{directory}/tok" if directory else "a local Multi30k copy (see multi30k_dir)"
            raise DataError(f"dataset {MULTI30K_LC_TOK!r} reads the upstream tok/ files, and {where} does not exist")
        directory = directory / "tok"
    elif directory is None:
        logger.info("No local Multi30k copy found; loading %s from the Hub", MULTI30K_HUB_ID)
        return load_parallel(MULTI30K_HUB_ID, src_lang, tgt_lang, splits=list(MULTI30K_SPLITS))
    stems = {split: facts.stem for split, facts in MULTI30K_SPLITS.items()}
    return load_parallel(directory, src_lang, tgt_lang, splits=stems)


TATOEBA_CMN_ENG = "tatoeba-cmn-eng"
TATOEBA_ENV = "HVT_TATOEBA_CMN_ENG_DIR"
TATOEBA_SPLITS = {"train": "train", "validation": "valid", "test": "test"}
"""The splits `tatoeba_cmn_eng` returns and their file stems in the local copy."""


def tatoeba_cmn_eng(src_lang: str = "zh", tgt_lang: str = "en", data_dir: str | Path | None = None) -> DatasetDict:
    """Tatoeba English-Mandarin Chinese (manythings.org `cmn-eng`, CC BY 2.0 France) with splits
    `train` (30,028 pairs) / `validation` (1,000) / `test` (1,000); languages `en` and `zh`.

    There is no standard split of this corpus and no Hub copy with this one: the data are read from
    the first of `data_dir`, `$HVT_TATOEBA_CMN_ENG_DIR` (each an error if it does not exist) and
    `local_data_dir("tatoeba-cmn-eng")` (`$HVT_DATA_DIR/tatoeba-cmn-eng` or
    `../shared/data/tatoeba-cmn-eng` beside the repository), files `{train,valid,test}.{en,zh}` as
    that folder's `SOURCE.md` describes. Without any of them it is an error saying where to put them.
    """
    for directory, where in ((data_dir, "data_dir"), (os.environ.get(TATOEBA_ENV) or None, f"${TATOEBA_ENV}")):
        if directory is not None:
            if not Path(directory).is_dir():
                raise DataError(f"Tatoeba cmn-eng directory {str(directory)!r} ({where}) does not exist")
            break
    else:
        directory = local_data_dir(TATOEBA_CMN_ENG)
    if directory is None:
        raise DataError(
            f"dataset {TATOEBA_CMN_ENG!r}: no local copy found. Put the files "
            f"{{train,valid,test}}.{{en,zh}} in {REPO_ROOT.parent / 'shared' / 'data' / TATOEBA_CMN_ENG}, or set "
            f"${TATOEBA_ENV} (or $HVT_DATA_DIR, holding a {TATOEBA_CMN_ENG}/ folder), or set data_dir"
        )
    return load_parallel(Path(directory), src_lang, tgt_lang, splits=TATOEBA_SPLITS)


def tokenized_references(dataset: str, split: str, tgt_lang: str, data_dir: str | Path | None = None) -> Path | None:
    """The lowercased, Moses-tokenised references of a Multi30k split (`tok/` of the local copy that
    `multi30k` reads), or `None` for other data sets or when there is no such file."""
    if dataset not in MULTI30K_NAMES or split not in MULTI30K_SPLITS:
        return None
    directory = multi30k_dir(data_dir)
    path = directory / "tok" / f"{MULTI30K_SPLITS[split].stem}.{tgt_lang}" if directory else None
    return path if path is not None and path.is_file() else None


@dataclass(frozen=True)
class LowercasedTokenizedReferences:
    """How to score a model's translations of one split the way published Multi30k systems are scored: the
    split's lowercased, Moses-tokenised references (`path`), and whether the model's output already is such
    text (`output_is_tokenized`: trained on `multi30k-lc-tok`), so that it is scored as it is."""

    path: Path
    output_is_tokenized: bool


def lowercased_tokenized_scoring(
    dataset: str, split: str, tgt_lang: str, data_dir: str | Path | None = None
) -> LowercasedTokenizedReferences | None:
    """`tokenized_references` with `is_lowercased_tokenized` of the same data set, or `None` when the split has
    no such references."""
    path = tokenized_references(dataset, split, tgt_lang, data_dir)
    return None if path is None else LowercasedTokenizedReferences(path, is_lowercased_tokenized(dataset))


def is_lowercased_tokenized(dataset: str) -> bool:
    """Whether `dataset`'s text is Multi30k's lowercased, Moses-tokenised `tok/` text (and so is a model's
    output after training on it): its BLEU against the `tok/` references is then computed on that text as it is."""
    return dataset == MULTI30K_LC_TOK


def published_split_name(dataset: str, split: str) -> str:
    """The name a results table uses for `split` of `dataset` (`test_2016_flickr` for Multi30k's test)."""
    if dataset in MULTI30K_NAMES and split in MULTI30K_SPLITS:
        return MULTI30K_SPLITS[split].name
    return split


def tokenize_dataset(
    dsdict: DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    *,
    num_proc: int | None = None,
    cache_dir: str | Path | None = None,
) -> DatasetDict:
    """Add `input_ids`, `attention_mask`, `labels` and the lengths `src_len`, `tgt_len`.

    Calls `tokenizer(src, text_target=tgt, truncation=False)` in batches through
    `Dataset.map`; the tokenizer's post-processor appends `</s>` to both sides. Padding is left to
    `DataCollatorForSeq2Seq`. The length columns feed `train.batching.TokenBudgetBatchSampler`
    and `filter_by_length`.

    Caching: datasets loaded from the Hub are cached by `datasets` itself. Local corpora live in
    memory; pass `cache_dir` to write the result to Arrow files there, named by a hash of the
    data and the tokenizer, so a second call with the same inputs reads them back.
    """

    def tokenize(batch: dict[str, list]) -> dict[str, list]:
        encoded = tokenizer(batch["src"], text_target=batch["tgt"], truncation=False)
        return {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "labels": encoded["labels"],
            "src_len": [len(ids) for ids in encoded["input_ids"]],
            "tgt_len": [len(ids) for ids in encoded["labels"]],
        }

    cache_files = None
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cache_files = {
            split: str(Path(cache_dir) / f"tokenized-{split}-{Hasher.hash([ds, tokenizer])}.arrow")
            for split, ds in dsdict.items()
        }
    return dsdict.map(tokenize, batched=True, num_proc=num_proc, cache_file_names=cache_files, desc="Tokenizing")


def filter_by_length(dataset: Dataset, max_source_length: int, max_target_length: int) -> tuple[Dataset, int]:
    """Drop pairs whose source or target has more tokens than allowed; return `(kept, n_dropped)`.

    Works on the `src_len` / `tgt_len` columns of `tokenize_dataset` (lengths include `</s>`) and
    logs how many pairs it dropped. Apply it to the training split only.
    """
    missing = [column for column in ("src_len", "tgt_len") if column not in dataset.column_names]
    if missing:
        raise DataError(f"filter_by_length needs columns {missing}; run tokenize_dataset first")
    if max_source_length < 1 or max_target_length < 1:
        raise ValueError(f"maximum lengths must be >= 1, got {max_source_length} and {max_target_length}")

    def short_enough(src_len: list[int], tgt_len: list[int]) -> list[bool]:
        return [s <= max_source_length and t <= max_target_length for s, t in zip(src_len, tgt_len, strict=True)]

    kept = dataset.filter(short_enough, input_columns=["src_len", "tgt_len"], batched=True, desc="Length filter")
    dropped = len(dataset) - len(kept)
    logger.info(
        "filter_by_length dropped %d of %d pairs (%.2f%%) longer than %d source / %d target tokens",
        dropped, len(dataset), 100 * dropped / max(len(dataset), 1), max_source_length, max_target_length,
    )  # fmt: skip
    if len(kept) == 0:
        raise DataError(
            f"filter_by_length dropped all {len(dataset)} pairs "
            f"(max_source_length={max_source_length}, max_target_length={max_target_length})"
        )
    return kept, dropped


def example_lengths(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Source and target lengths of every row: `src_len` / `tgt_len`, else the lengths of
    `input_ids` / `labels`. Reads whole columns through Arrow (iterating a `datasets` column
    row by row is orders of magnitude slower)."""
    for src_column, tgt_column in (("src_len", "tgt_len"), ("input_ids", "labels")):
        if {src_column, tgt_column} <= set(dataset.column_names):
            return column_lengths(dataset, src_column), column_lengths(dataset, tgt_column)
    raise DataError(
        f"cannot find example lengths: the dataset needs columns src_len/tgt_len or input_ids/labels, "
        f"has {dataset.column_names}"
    )


def column_lengths(dataset: Dataset, column: str) -> np.ndarray:
    """A column of lengths as is, or the lengths of a column of token lists, as a numpy array."""
    values = dataset.with_format("arrow", columns=[column])[:][column]
    if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        values = pc.list_value_length(values)
    return values.to_numpy()


# ---- Local text directories ---------------------------------------------------------------------


def _load_text_dir(directory: Path, src_lang: str, tgt_lang: str, splits: Splits) -> DatasetDict:
    """Aligned `{split}.{lang}` files: line i of `X.src` translates line i of `X.tgt`."""
    languages = sorted({path.suffix[1:] for path in directory.iterdir() if path.is_file() and path.suffix})
    for lang in (src_lang, tgt_lang):
        if lang not in languages:
            raise DataError(f"no '*.{lang}' files in {directory}; languages found: {', '.join(languages) or 'none'}")
    found = {path.stem: path.stem for path in directory.glob(f"*.{src_lang}") if path.is_file()}
    result = {}
    for split, stem in _select_splits(found, splits, str(directory)).items():
        src_path, tgt_path = directory / f"{stem}.{src_lang}", directory / f"{stem}.{tgt_lang}"
        src = [line.strip() for line in _read_lines(src_path)]
        tgt = [line.strip() for line in _read_lines(tgt_path)]
        if len(src) != len(tgt):
            raise DataError(f"misaligned files: {src_path} has {len(src)} lines but {tgt_path} has {len(tgt)}")
        _check_not_empty(src, str(src_path))
        _check_not_empty(tgt, str(tgt_path))
        result[split] = _to_dataset(src, tgt)
    return DatasetDict(result)


def _read_lines(path: Path) -> list[str]:
    """Lines of a UTF-8 text file without their line endings (`train.lines`: split at `\\n` only, not
    at U+2028, U+0085 and other characters that may occur inside a sentence)."""
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    try:
        return read_lines(path)
    except NotUTF8Error as error:
        raise DataError(str(error)) from None


# ---- TSV and JSON-lines files -----------------------------------------------------------------


def _load_files(
    files: Mapping[str, Path], src_lang: str, tgt_lang: str, tsv_columns: Sequence[str] | None
) -> DatasetDict:
    result = {}
    for split, path in files.items():
        if path.suffix in TSV_SUFFIXES:
            src, tgt = _read_tsv(path, src_lang, tgt_lang, tsv_columns)
        elif path.suffix in JSONL_SUFFIXES:
            src, tgt = _read_jsonl(path, src_lang, tgt_lang)
        else:
            raise DataError(f"{path}: unknown file type; expected one of {TSV_SUFFIXES + JSONL_SUFFIXES}")
        result[split] = _to_dataset(src, tgt)
    return DatasetDict(result)


def _read_tsv(path: Path, src_lang: str, tgt_lang: str, columns: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Tab-separated pairs, with a header row or positional `columns`; no quoting."""
    lines, first = _read_lines(path), 1
    header = lines[0].split("\t") if lines else []
    if src_lang in header and tgt_lang in header:
        columns, lines, first = header, lines[1:], 2
    columns = list(columns or (src_lang, tgt_lang))
    for lang in (src_lang, tgt_lang):
        if lang not in columns:
            raise DataError(f"{path}: no column {lang!r}; columns are {columns}")
    src, tgt = [], []
    for number, line in enumerate(lines, start=first):
        if not line.strip():
            raise DataError(f"{path}:{number}: empty line")
        fields = line.split("\t")
        if len(fields) < len(columns):
            raise DataError(
                f"{path}:{number}: expected {len(columns)} tab-separated fields {columns}, found {len(fields)}"
            )
        src.append(fields[columns.index(src_lang)].strip())
        tgt.append(fields[columns.index(tgt_lang)].strip())
    _check_not_empty(src, f"{path} column {src_lang!r}", start=first)
    _check_not_empty(tgt, f"{path} column {tgt_lang!r}", start=first)
    return src, tgt


def _read_jsonl(path: Path, src_lang: str, tgt_lang: str) -> tuple[list[str], list[str]]:
    """One JSON object per line: `{"de": ..., "en": ...}` or `{"translation": {"de": ..., "en": ...}}`."""
    src, tgt = [], []
    for number, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            raise DataError(f"{path}:{number}: empty line")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: not a JSON object ({error.msg})") from None
        pair = record.get("translation", record) if isinstance(record, dict) else None
        if not isinstance(pair, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, found {type(record).__name__}")
        for lang in (src_lang, tgt_lang):
            if not isinstance(pair.get(lang), str):
                raise DataError(f"{path}:{number}: no string under key {lang!r}; keys are {sorted(pair)}")
        src.append(pair[src_lang].strip())
        tgt.append(pair[tgt_lang].strip())
    _check_not_empty(src, f"{path} key {src_lang!r}")
    _check_not_empty(tgt, f"{path} key {tgt_lang!r}")
    return src, tgt


# ---- Hugging Face Hub -------------------------------------------------------------------------


def _load_hub(name: str, config: str | None, src_lang: str, tgt_lang: str, splits: Splits) -> DatasetDict:
    """A Hub dataset with either flat language columns or a WMT-style `translation` dict column."""
    loaded = datasets.load_dataset(name, config)
    selected = _select_splits(dict(loaded), splits, name)
    return DatasetDict(
        {split: _normalise_hub_split(ds, f"{name}[{split}]", src_lang, tgt_lang) for split, ds in selected.items()}
    )


def _normalise_hub_split(ds: Dataset, where: str, src_lang: str, tgt_lang: str) -> Dataset:
    if "translation" in ds.column_names:
        rows = ds["translation"]
        available = sorted(rows[0]) if rows else []

        def texts(lang: str) -> list[str]:
            return [row[lang] for row in rows]
    else:
        available = ds.column_names

        def texts(lang: str) -> list[str]:
            return ds[lang]

    for lang in (src_lang, tgt_lang):
        if lang not in available:
            raise DataError(f"{where}: no language {lang!r}; available: {available}")
    src, tgt = [text.strip() for text in texts(src_lang)], [text.strip() for text in texts(tgt_lang)]
    _check_not_empty(src, f"{where} ({src_lang})", unit="row (0-based)", start=0)
    _check_not_empty(tgt, f"{where} ({tgt_lang})", unit="row (0-based)", start=0)
    return _to_dataset(src, tgt)


# ---- Shared helpers ---------------------------------------------------------------------------


def _looks_local(source: str) -> bool:
    """A string names a local path if it exists, is absolute or relative (`./`), or has a file suffix."""
    path = Path(source)
    return path.exists() or path.is_absolute() or source.startswith(".") or path.suffix in TSV_SUFFIXES + JSONL_SUFFIXES


def _select_splits(available: Mapping[str, object], splits: Splits, where: str) -> dict:
    """Keep (and rename) the requested splits, failing on an unknown one."""
    if not available:
        raise DataError(f"no splits found in {where}")
    wanted = dict(splits) if isinstance(splits, Mapping) else {s: s for s in (splits or sorted(available))}
    unknown = [name for name in wanted.values() if name not in available]
    if unknown:
        raise DataError(f"{where}: no split(s) {unknown}; available: {sorted(available)}")
    return {out: available[name] for out, name in wanted.items()}


def _check_not_empty(texts: Sequence[str], where: str, unit: str = "line", start: int = 1) -> None:
    """Fail on an empty split or on empty texts, naming the first offending line or row."""
    if not texts:
        raise DataError(f"{where} is empty")
    empty = [number for number, text in enumerate(texts, start=start) if not text]
    if empty:
        raise DataError(f"{where}: {len(empty)} empty text(s), first at {unit} {empty[0]}")


def _to_dataset(src: list[str], tgt: list[str]) -> Dataset:
    return Dataset.from_dict({"id": list(range(len(src))), "src": src, "tgt": tgt})
