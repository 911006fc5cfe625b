"""Evaluate a model folder on a split: translate it, score with sacreBLEU, write hypotheses and results.

    python -m train.evaluate_model runs/multi30k-de-en/model --split test
    python -m train.evaluate_model MODEL --dataset path/to/data --src-lang de --tgt-lang en --split test

Writes `<output_dir>/hyp.<split>.<tgt>` (one line per source sentence) and
`<output_dir>/results.<split>.json` with BLEU and chrF and their sacreBLEU signatures (detokenised,
cased). On Multi30k it also reports BLEU on lowercased Moses-tokenised text against the upstream
`tok/` references, the convention of published Multi30k results.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from train.allocator import keep_freed_memory
from train.data import (
    LowercasedTokenizedReferences,
    add_data_arguments,
    load_split,
    lowercased_tokenized_scoring,
)
from train.evaluate import score, score_tokenized_lowercase, write_results
from train.lines import write_lines_atomic
from train.model_folder import DTYPES, load_model
from train.onednn_cache import make_room_for_batch_shapes
from train.translate import decoding_settings, positive_int, translate


def evaluate_model(
    model_dir: str | Path,
    *,
    dataset: str = "multi30k",
    src_lang: str = "de",
    tgt_lang: str = "en",
    split: str = "test",
    data_dir: str | None = None,
    num_beams: int | None = None,
    length_penalty: float | None = None,
    output_dir: str | Path | None = None,
    max_samples: int | None = None,
    dtype: str = "float32",
) -> dict[str, Any]:
    """Translate `split` with the model in `model_dir`, its weights loaded as `dtype`, and score it
    (`evaluate_translations`); returns the results dict. `output_dir` defaults to `model_dir`."""
    data = load_split(dataset, src_lang, tgt_lang, split, data_dir=data_dir)
    if max_samples is not None:
        data = data.select(range(min(max_samples, len(data))))
    model, tokenizer = load_model(model_dir, dtype=dtype)
    results, _ = evaluate_translations(
        model,
        tokenizer,
        data,
        output_dir=output_dir or model_dir,
        meta={"model": str(model_dir), "dataset": dataset, "split": split, "language_pair": f"{src_lang}-{tgt_lang}"},
        tgt_lang=tgt_lang,
        tokenized_refs=None if max_samples else lowercased_tokenized_scoring(dataset, split, tgt_lang, data_dir),
        num_beams=num_beams,
        length_penalty=length_penalty,
    )
    return results


def evaluate_translations(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: Dataset,
    *,
    output_dir: str | Path,
    meta: dict[str, Any],
    tgt_lang: str,
    tokenized_refs: LowercasedTokenizedReferences | None = None,
    num_beams: int | None = None,
    length_penalty: float | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """Translate `data["src"]`, score against `data["tgt"]` and write `hyp.<split>.<tgt>` and
    `results.<split>.json` (`meta["split"]`) to `output_dir`; returns the results and the translations.

    Decoding comes from the model's `generation_config`, except `num_beams` / `length_penalty`
    when given; the results record the settings used. With `tokenized_refs` (Multi30k's `tok/`
    file of the whole split, `train.data.lowercased_tokenized_scoring`) the results also hold BLEU on
    lowercased, tokenised text.
    """
    start = time.perf_counter()
    hypotheses = translate(
        model, tokenizer, data["src"], num_beams=num_beams, length_penalty=length_penalty, progress=True
    )
    results: dict[str, Any] = {
        **meta,
        **decoding_settings(model, num_beams=num_beams, length_penalty=length_penalty),
        "dtype": str(model.dtype).removeprefix("torch."),
        "translate_seconds": round(time.perf_counter() - start, 1),
        **score(hypotheses, data["tgt"], tgt_lang),
    }
    if tokenized_refs is not None:
        tok = score_tokenized_lowercase(
            hypotheses, tokenized_refs.path, tgt_lang, pretokenized=tokenized_refs.output_is_tokenized
        )
        results["bleu_tok_lc"] = tok["bleu_tok_lc"]
        results["bleu_tok_lc_signature"] = tok["bleu_tok_lc_signature"]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_lines_atomic(out / f"hyp.{meta['split']}.{tgt_lang}", hypotheses)
    write_results(out / f"results.{meta['split']}.json", results)
    return results, hypotheses


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    add_data_arguments(parser, split="test")
    parser.add_argument("--beams", type=positive_int, default=None, help="beam size (default: the model's)")
    parser.add_argument("--length-penalty", type=float, default=None, help="alpha (default: the model's)")
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("--max-samples", type=positive_int, default=None)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="weight type (see translate)")
    args = parser.parse_args(argv)
    keep_freed_memory()  # glibc: no page faults for every decoding step's tensors (train/allocator.py)
    make_room_for_batch_shapes()  # oneDNN: each batch shape's kernels compiled once (train/onednn_cache.py)
    results = evaluate_model(
        args.model,
        dataset=args.dataset,
        src_lang=args.src_lang,
        tgt_lang=args.tgt_lang,
        split=args.split,
        data_dir=args.data_dir,
        num_beams=args.beams,
        length_penalty=args.length_penalty,
        output_dir=args.output_dir,
        max_samples=args.max_samples,
        dtype=args.dtype,
    )
    print(f"BLEU {results['bleu']:.2f}  ({results['bleu_signature']})")
    print(f"chrF {results['chrf']:.2f}  ({results['chrf_signature']})")
    if "bleu_tok_lc" in results:
        print(f"BLEU lowercased, tokenised {results['bleu_tok_lc']:.2f}  ({results['bleu_tok_lc_signature']})")


if __name__ == "__main__":
    main()
