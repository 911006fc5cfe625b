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

from train.data import load_parallel, local_data_dir, multi30k
from train.evaluate import score, score_tokenized_lowercase, write_results
from train.translate import decoding_settings, load_model, translate

MULTI30K_TOK_SPLITS = {"test": "test2016", "validation": "val", "train": "train"}


def load_split(dataset: str, src_lang: str, tgt_lang: str, split: str, data_dir: str | None = None):
    """The `split` of a dataset given as `multi30k`, a local path or a Hub id (columns src, tgt)."""
    if dataset == "multi30k":
        return multi30k(src_lang, tgt_lang, data_dir=data_dir)[split]
    return load_parallel(dataset, src_lang, tgt_lang)[split]


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
) -> dict[str, Any]:
    """Translate `split` with the model in `model_dir` and score it; returns the results dict.

    Decoding comes from the model's `generation_config`, except `num_beams` / `length_penalty`
    when given; the results record the settings used."""
    data = load_split(dataset, src_lang, tgt_lang, split, data_dir)
    if max_samples is not None:
        data = data.select(range(min(max_samples, len(data))))
    model, tokenizer = load_model(model_dir)
    start = time.perf_counter()
    hypotheses = translate(
        model, tokenizer, data["src"], num_beams=num_beams, length_penalty=length_penalty, progress=True
    )
    seconds = time.perf_counter() - start
    results: dict[str, Any] = {
        "model": str(model_dir),
        "dataset": dataset,
        "split": split,
        "language_pair": f"{src_lang}-{tgt_lang}",
        **decoding_settings(model, num_beams=num_beams, length_penalty=length_penalty),
        "translate_seconds": round(seconds, 1),
        **score(hypotheses, data["tgt"], tgt_lang),
    }
    tok_dir = Path(data_dir) if data_dir else local_data_dir("multi30k")
    if dataset == "multi30k" and tok_dir is not None and max_samples is None:
        refs = tok_dir / "tok" / f"{MULTI30K_TOK_SPLITS.get(split, split)}.{tgt_lang}"
        if refs.is_file():
            tok = score_tokenized_lowercase(hypotheses, refs, tgt_lang)
            results["bleu_tok_lc"] = tok["bleu_tok_lc"]
            results["bleu_tok_lc_signature"] = tok["bleu_tok_lc_signature"]
    out = Path(output_dir) if output_dir else Path(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"hyp.{split}.{tgt_lang}").write_text("\n".join(hypotheses) + "\n", encoding="utf-8")
    write_results(out / f"results.{split}.json", results)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--dataset", default="multi30k")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--src-lang", default="de")
    parser.add_argument("--tgt-lang", default="en")
    parser.add_argument("--split", default="test")
    parser.add_argument("--beams", type=int, default=None, help="beam size (default: the model's generation config)")
    parser.add_argument("--length-penalty", type=float, default=None, help="alpha (default: the model's)")
    parser.add_argument("--output-dir", default=None)
    parser.add_argument("--max-samples", type=int, default=None)
    args = parser.parse_args(argv)
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
    )
    print(f"BLEU {results['bleu']:.2f}  ({results['bleu_signature']})")
    print(f"chrF {results['chrf']:.2f}  ({results['chrf_signature']})")
    if "bleu_tok_lc" in results:
        print(f"BLEU lowercased, tokenised {results['bleu_tok_lc']:.2f}  ({results['bleu_tok_lc_signature']})")


if __name__ == "__main__":
    main()
