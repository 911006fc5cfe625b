"""Choose the beam size and length penalty on the validation split, as §6.1 did on its development set.

    python -m train.tune_decoding runs/multi30k-en-de-full/model --src-lang en --tgt-lang de \\
        --beams 4,5 --length-penalties 0.6,1.0,1.4 --json tuning.json
    python -m train.tune_decoding MODEL ... --apply     # also make the best the model's default decoding

§6.1: "We used beam search with a beam size of 4 and length penalty α = 0.6. These hyperparameters were
chosen after experimentation on the development set." Which values are best depends on the model and the
language pair: a model whose translations come out short (BLEU's brevity penalty below 1 on validation)
gains from a larger α. This translates the validation split once per combination of the grid, scores each
with sacreBLEU and picks the highest BLEU (ties: the smaller beam, then the α closer to the paper's 0.6).
Greedy decoding (beam 1) has no length penalty, so it is translated once.

The test split is refused: it is reported, never tuned on.

`--apply` writes the chosen beam and α into the model folder's `generation_config.json` (whole or not at
all), so `generate()`, `translate` and the pipeline decode that way by default. The recipe does the same
after training when its config sets `tune_num_beams` / `tune_length_penalties` (`train.train.finish`), and
`python -m train.recipe --setting NAME --rescore` does it for a run that has already finished.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from train.allocator import keep_freed_memory
from train.data import add_data_arguments, load_split_from_arguments
from train.lines import write_text_atomic
from train.model_folder import load_model
from train.onednn_cache import make_room_for_batch_shapes
from train.translate import positive_int

logger = logging.getLogger(__name__)

PAPER_LENGTH_PENALTY = 0.6
"""§6.1's α: the tie-break prefers values close to it."""
RECORDED = ("bleu", "bleu_signature", "chrf", "bleu_brevity_penalty", "hyp_len", "ref_len", "translate_seconds")
"""What the grid records of each combination's results (`train.evaluate_model.evaluate_translations`)."""


def decoding_grid(num_beams: Sequence[int], length_penalties: Sequence[float]) -> list[tuple[int, float | None]]:
    """The (beam, α) combinations to translate with: every pair, except that beam 1 (greedy, which has no
    length penalty) appears once, with α None. Checks the values."""
    if not num_beams or not length_penalties:
        raise ValueError("tuning the decoding needs at least one beam size and one length penalty")
    bad_beams = [k for k in num_beams if not isinstance(k, int) or isinstance(k, bool) or k < 1]
    if bad_beams:
        raise ValueError(f"beam sizes must be positive integers, got {bad_beams}")
    bad_alphas = [a for a in length_penalties if isinstance(a, bool) or not isinstance(a, (int, float))]
    if bad_alphas:
        raise ValueError(f"length penalties must be numbers, got {bad_alphas}")
    grid: list[tuple[int, float | None]] = []
    for beams in dict.fromkeys(num_beams):
        for alpha in [None] if beams == 1 else dict.fromkeys(float(a) for a in length_penalties):
            grid.append((beams, alpha))
    return grid


def tune_decoding(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    data: Dataset,
    *,
    split: str,
    tgt_lang: str,
    num_beams: Sequence[int],
    length_penalties: Sequence[float],
    output_dir: str | Path,
) -> dict[str, Any]:
    """Translate `data` (a validation split) with every (beam, α) of the grid and choose the best by BLEU.

    Returns {"split", "metric", "grid": [{num_beams, length_penalty, bleu, ...}, ...], "best": {num_beams,
    length_penalty}}. Each combination's hypotheses and results go to `output_dir/beam<k>-alpha<α>/`."""
    from train.evaluate_model import evaluate_translations  # imports torch-heavy modules: only here

    if split.startswith("test"):
        raise ValueError(f"decoding is tuned on a validation split, not {split!r}: test is reported, never tuned on")
    rows = []
    for beams, alpha in decoding_grid(num_beams, length_penalties):
        name = f"beam{beams}" + (f"-alpha{alpha:g}" if alpha is not None else "")
        results, _ = evaluate_translations(
            model,
            tokenizer,
            data,
            output_dir=Path(output_dir) / name,
            meta={"split": split},
            tgt_lang=tgt_lang,
            num_beams=beams,
            length_penalty=alpha,
        )
        row = {"num_beams": beams, "length_penalty": alpha, **{key: results.get(key) for key in RECORDED}}
        logger.info("%s on %s: BLEU %.2f (brevity penalty %.3f)", name, split, row["bleu"], row["bleu_brevity_penalty"])
        rows.append(row)
    best = max(rows, key=_preference)
    return {
        "split": split,
        "num_sentences": len(data),
        "metric": "bleu",
        "grid": rows,
        "best": {"num_beams": best["num_beams"], "length_penalty": best["length_penalty"]},
    }


def _preference(row: dict[str, Any]) -> tuple[float, int, float]:
    """Highest BLEU (at the precision BLEU is reported), then the smaller beam, then α closest to 0.6."""
    alpha = row["length_penalty"] if row["length_penalty"] is not None else PAPER_LENGTH_PENALTY
    return round(row["bleu"], 2), -row["num_beams"], -abs(alpha - PAPER_LENGTH_PENALTY)


def apply_decoding(model: PreTrainedModel | None, model_dir: str | Path, best: dict[str, Any]) -> Path:
    """Make `best` ({num_beams, length_penalty}) the default decoding of the folder `model_dir` (its
    `generation_config.json`, replaced whole) and of `model` (the loaded model, if given)."""
    path = Path(model_dir) / "generation_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{model_dir}: no generation_config.json to write the tuned decoding into")
    config = GenerationConfig.from_pretrained(model_dir)
    updates = {"num_beams": best["num_beams"]}
    if best.get("length_penalty") is not None:
        updates["length_penalty"] = best["length_penalty"]
    config.update(**updates)
    config.validate()
    write_text_atomic(path, config.to_json_string(use_diff=True))
    if model is not None:
        model.generation_config.update(**updates)
    return path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a model folder")
    add_data_arguments(parser, split="validation", split_help="a validation split (test is refused)")
    parser.add_argument("--beams", default="4", help="comma-separated beam sizes, e.g. 4,5,8")
    parser.add_argument("--length-penalties", default="0.6", help="comma-separated α values, e.g. 0.6,1.0,1.4")
    parser.add_argument("--max-samples", type=positive_int, default=None, help="the first N pairs of the split")
    parser.add_argument("--output-dir", default=None, help="hypotheses per setting (default: MODEL/tuning)")
    parser.add_argument("--apply", action="store_true", help="write the best into MODEL/generation_config.json")
    parser.add_argument("--json", default=None, help="also write the grid and the choice to this file")
    args = parser.parse_args(argv)
    keep_freed_memory()  # glibc: no page faults for every decoding step's tensors (train/allocator.py)
    make_room_for_batch_shapes()  # oneDNN: each batch shape's kernels compiled once (train/onednn_cache.py)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        beams = [int(k) for k in args.beams.split(",")]
        alphas = [float(a) for a in args.length_penalties.split(",")]
    except ValueError as error:
        parser.error(f"--beams takes integers and --length-penalties numbers, comma-separated ({error})")
    data = load_split_from_arguments(args)
    if args.max_samples is not None:
        data = data.select(range(min(args.max_samples, len(data))))
    model, tokenizer = load_model(args.model)
    tuning = tune_decoding(
        model,
        tokenizer,
        data,
        split=args.split,
        tgt_lang=args.tgt_lang,
        num_beams=beams,
        length_penalties=alphas,
        output_dir=args.output_dir or Path(args.model) / "tuning",
    )
    tuning = {
        "model": str(args.model),
        "dataset": args.dataset,
        "language_pair": f"{args.src_lang}-{args.tgt_lang}",
        **tuning,
    }
    for row in tuning["grid"]:
        alpha = "-" if row["length_penalty"] is None else f"{row['length_penalty']:g}"
        bleu, brevity = row["bleu"], row["bleu_brevity_penalty"]
        print(f"beam {row['num_beams']:2d}  alpha {alpha:>4}  BLEU {bleu:6.2f}  brevity penalty {brevity:.3f}")
    print(f"best on {args.split}: {tuning['best']}")
    if args.apply:
        print(f"wrote {apply_decoding(model, args.model, tuning['best'])}")
    if args.json:
        write_text_atomic(args.json, json.dumps(tuning, indent=2) + "\n")
    return tuning


if __name__ == "__main__":
    main()
