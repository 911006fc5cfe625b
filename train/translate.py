"""Translate text with a trained model folder: stdin or a file in, one translation per line out.

    python -m train.translate runs/multi30k-de-en/model < input.de > output.en
    python -m train.translate runs/multi30k-de-en/model --input test.de --output hyp.en --beams 4

Sentences are sorted by length and batched by a token budget, so little time goes to padding;
outputs come back in input order.

What the command guarantees:

- One output line per input line, always. Lines end at `\n` only (a `\r` before it is dropped),
  not at the other characters `str.splitlines()` breaks at (U+2028, U+0085, form feed, ...), which
  stay inside their sentence; a line break inside a translation is written as a space.
- An empty (or blank) input line gives an empty output line, without running the model; so does
  the pipeline for an empty string.
- Input must be UTF-8: otherwise the error names the file (or `<stdin>`), the line and the column.
- A sentence longer than the model's position table (`max_position_embeddings` tokens, `</s>`
  included) is an error naming its line, its length and the limit, as in the model's pipeline:
  it is never silently truncated. Nothing is written then.
- `--output` is written whole or not at all (`train.lines.write_lines_atomic`).
- The model folder is checked on loading (`train.model_folder`): a missing or corrupt file is an
  error naming it, and weights that do not match `config.json` are refused.

Decoding: the model's own `generation_config.json` (for this project's models the paper's §6.1:
beam 4, length penalty 0.6, at most input length + 50 tokens), except the settings given as flags
(`--beams`, `--length-penalty`, `--max-new-tokens`) or arguments of `translate`. `--dtype bfloat16`
loads the weights in bf16, faster on CPUs with native bf16 (`benchmarks/README.md` has its BLEU).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from hf_vanilla_transformer.generation import MAX_NEW_TOKENS_OVER_INPUT
from hf_vanilla_transformer.onednn import packed_weights
from train.allocator import keep_freed_memory
from train.extras import require_extra
from train.lines import decode_utf8, split_lines, write_lines_atomic
from train.model_folder import DTYPES, load_model
from train.onednn_cache import make_room_for_batch_shapes
from train.precision import int8_sums_saturate

logger = logging.getLogger(__name__)


def decoding_settings(
    model: PreTrainedModel,
    *,
    num_beams: int | None = None,
    length_penalty: float | None = None,
    max_new_tokens: int | None = None,
) -> dict[str, Any]:
    """The decoding `translate` uses: the model's `generation_config` with the given (not `None`)
    settings on top. This is what results files record."""
    config = model.generation_config
    settings = {
        "num_beams": config.num_beams,
        "length_penalty": config.length_penalty,
        # As generate() resolves it: the generation config's, else an older config.json's, else GNMT.
        "length_penalty_form": getattr(config, "length_penalty_form", None)
        or getattr(model.config, "length_penalty_form", None)
        or "gnmt",
        "max_new_tokens": config.max_new_tokens,
        "max_new_tokens_over_input": getattr(config, "max_new_tokens_over_input", None),
    }
    overrides = {"num_beams": num_beams, "length_penalty": length_penalty, "max_new_tokens": max_new_tokens}
    settings.update({key: value for key, value in overrides.items() if value is not None})
    if settings["max_new_tokens"] is not None:
        settings["max_new_tokens_over_input"] = None  # a fixed limit replaces the length-relative one
    return settings


@torch.inference_mode()
def translate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    num_beams: int | None = None,
    length_penalty: float | None = None,
    max_new_tokens: int | None = None,
    min_new_tokens: int | None = None,
    batch_tokens: int = 6000,
    batch_size: int | None = None,
    progress: bool = False,
) -> list[str]:
    """Translate `texts` (in order); an empty or blank text gives "" (the model is not run).

    `batch_tokens` bounds source tokens x beams per batch (sentences sorted by length, so padding is small),
    and `batch_size`, if given, the sentences per batch. Decoding settings left at `None` come
    from `model.generation_config` (`decoding_settings`); `min_new_tokens` (none by default) keeps `</s>` out of the
    first tokens of every output. Raises `ValueError` naming the line (1-based position in `texts`) of a text
    longer than the model's position table."""
    if isinstance(texts, str):
        raise TypeError("translate() takes a list of sentences, not a single string")
    if num_beams is not None and (isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1):
        raise ValueError(f"num_beams must be a positive integer, got {num_beams!r}")
    if batch_tokens < 1:
        raise ValueError(f"batch_tokens must be >= 1, got {batch_tokens}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
    overrides = {"num_beams": num_beams, "length_penalty": length_penalty, "max_new_tokens": max_new_tokens}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    num_beams = decoding_settings(model, **overrides)["num_beams"]
    if min_new_tokens is not None:
        overrides["min_new_tokens"] = min_new_tokens
    limit = model.config.max_position_embeddings
    encoded = {i: tokenizer(text.strip(), truncation=False).input_ids for i, text in enumerate(texts) if text.strip()}
    for i, ids in encoded.items():
        if len(ids) > limit:
            raise ValueError(
                f"line {i + 1} is {len(ids)} tokens long, more than the model's {limit} positions "
                "(max_position_embeddings, </s> included); shorten or split it"
            )
    order = sorted(encoded, key=lambda i: len(encoded[i]), reverse=True)
    outputs: list[str] = [""] * len(texts)
    batches, batch = [], []
    for i in order:
        longest = len(encoded[batch[0]]) if batch else len(encoded[i])
        full = batch_size is not None and len(batch) == batch_size
        if batch and (full or (len(batch) + 1) * longest * num_beams > batch_tokens):
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    # The weights are fixed for all batches: oneDNN packs them once, not once per batch (`onednn.py`).
    with packed_weights():
        for batch in tqdm(batches, desc="translating", disable=not progress, unit="batch"):
            inputs = tokenizer.pad({"input_ids": [encoded[i] for i in batch]}, return_tensors="pt")
            generated = model.generate(**inputs.to(model.device), **overrides)
            for i, text in zip(batch, tokenizer.batch_decode(generated, skip_special_tokens=True), strict=True):
                outputs[i] = " ".join(text.replace("\r", "\n").split("\n")).strip()
    return outputs


def translate_with_ctranslate2(
    model_dir: str | Path,
    texts: Sequence[str],
    *,
    num_beams: int | None = None,
    length_penalty: float | None = None,
    max_new_tokens: int | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    intra_threads: int = 0,
) -> list[str]:
    """Translate `texts` (in order) with a CTranslate2 folder written by `export_ctranslate2`.

    Same decoding as `train.translate.translate` with `length_penalty_form="hf"`: beam search with
    `score / len**alpha`, and without `max_new_tokens` at most input length + 50 new tokens per sentence
    (§6.1), within the position table. An empty (or blank) text gives `""`, as the translate CLI and
    the pipeline do (CTranslate2 would not decode a source that is only `</s>` anyway).
    `intra_threads=0` lets CTranslate2 choose the thread count. `num_beams` and `length_penalty` default
    to the exported model's generation config (`generation_config.json` in the folder).
    """
    if isinstance(texts, str):
        raise TypeError("translate_with_ctranslate2() takes a list of sentences, not a single string")
    ctranslate2 = require_extra("ctranslate2", "translate_with_ctranslate2")
    saved = Path(model_dir) / "generation_config.json"
    defaults = json.loads(saved.read_text()) if saved.is_file() else {}
    if num_beams is None or length_penalty is None:
        if not defaults:
            raise FileNotFoundError(f"{saved} is missing: pass num_beams and length_penalty, or export the model again")
        num_beams = num_beams if num_beams is not None else defaults.get("num_beams", 1)
        length_penalty = length_penalty if length_penalty is not None else defaults.get("length_penalty", 1.0)
    translator = ctranslate2.Translator(str(model_dir), device=device, intra_threads=intra_threads)
    if device == "cpu" and translator.compute_type.startswith("int8") and int8_sums_saturate():
        logger.warning(
            "CTranslate2 int8 on a CPU without VNNI: its int8 products can saturate 16-bit sums here, so translations "
            "differ more from fp32 (measured on Multi30k: -0.42 BLEU, against -0.03 with VNNI). Export with "
            "--quantization float32 where that matters."
        )
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    positions = tokenizer.model_max_length  # the model's max_position_embeddings, written at export
    sources = {
        i: tokenizer.convert_ids_to_tokens(tokenizer(text, truncation=True, max_length=positions).input_ids)
        for i, text in enumerate(texts)
        if text.strip()
    }
    # CTranslate2 takes one length limit per call: sentences are grouped by their limit.
    by_limit: dict[int, list[int]] = defaultdict(list)
    for i, source in sources.items():
        limit = len(source) + MAX_NEW_TOKENS_OVER_INPUT if max_new_tokens is None else max_new_tokens
        by_limit[min(limit, positions - 1)].append(i)  # the decoder start token takes a position
    outputs = [""] * len(texts)
    for limit, rows in by_limit.items():
        results = translator.translate_batch(
            [sources[i] for i in rows],
            beam_size=num_beams,
            length_penalty=length_penalty,
            max_decoding_length=limit,
            min_decoding_length=0,  # CTranslate2's default 1 forbids </s> as the first token
            max_input_length=0,  # already truncated above
            max_batch_size=batch_size,
        )
        for i, result in zip(rows, results, strict=True):
            ids = tokenizer.convert_tokens_to_ids(result.hypotheses[0])
            outputs[i] = tokenizer.decode(ids, skip_special_tokens=True).strip()
    return outputs


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (>= 1), got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model folder or Hub repo id")
    parser.add_argument("--input", help="text file, one sentence per line (default: stdin)")
    parser.add_argument("--output", help="where to write translations (default: stdout)")
    parser.add_argument("--beams", type=positive_int, default=None, help="beam size (default: the model's)")
    parser.add_argument("--length-penalty", type=float, default=None, help="alpha (default: the model's)")
    parser.add_argument(
        "--max-new-tokens", type=positive_int, default=None, help="(default: the model's, input length + 50)"
    )
    parser.add_argument("--batch-tokens", type=positive_int, default=6000, help="source tokens x beams per batch")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="at most this many sentences per batch")
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="float32",
        help="weight type (torch engine): bfloat16 is faster on CPUs with native bf16 (avx512_bf16, AMX); "
        "its BLEU against float32 is in benchmarks/README.md",
    )
    parser.add_argument(
        "--engine",
        choices=("torch", "ctranslate2"),
        default="torch",
        help="ctranslate2: MODEL is a folder written by `python -m train.export MODEL --to ctranslate2` (faster on "
        "CPUs; beams are ranked with transformers' length penalty score / len**alpha, not the paper's GNMT form)",
    )
    args = parser.parse_args(argv)
    keep_freed_memory()  # glibc: no page faults for every decoding step's tensors (train/allocator.py)
    make_room_for_batch_shapes()  # oneDNN: each batch shape's kernels compiled once (train/onednn_cache.py)

    raw = Path(args.input).read_bytes() if args.input else sys.stdin.buffer.read()
    lines = split_lines(decode_utf8(raw, args.input or "<stdin>"))
    if args.engine == "ctranslate2":
        translated = translate_with_ctranslate2(
            args.model,
            lines,
            num_beams=args.beams,
            length_penalty=args.length_penalty,
            max_new_tokens=args.max_new_tokens,
        )
        translated = [text.replace("\n", " ") for text in translated]  # one line per input line
        _write(args.output, translated)
        return
    model, tokenizer = load_model(args.model, dtype=args.dtype)
    translated = translate(
        model,
        tokenizer,
        lines,
        num_beams=args.beams,
        length_penalty=args.length_penalty,
        max_new_tokens=args.max_new_tokens,
        batch_tokens=args.batch_tokens,
        batch_size=args.batch_size,
        progress=args.output is not None,
    )
    _write(args.output, translated)


def _write(output: str | None, translated: list[str]) -> None:
    if output:
        write_lines_atomic(output, translated)
    else:
        sys.stdout.write("".join(line + "\n" for line in translated))


if __name__ == "__main__":
    main()
