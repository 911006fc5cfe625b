"""The main recipe: Multi30k German -> English from scratch, end to end.

    python -m train.recipe                  # quick setting: about 15 minutes on a 2-core CPU
    python -m train.recipe --setting full   # the long De->En run, at most 2 hours (also full-en-de)
    python -m train.recipe --setting tatoeba-zh-en   # Tatoeba Chinese -> English (also tatoeba-en-zh)
    python -m train.recipe --resume         # continue an interrupted run of the same setting
    python -m train.recipe --refresh-cards  # copy finished runs' cards into model_cards/ (`make cards`)
    python -m train.recipe --rewrite-cards  # the same, each card first built again with the current card code
    python -m train.recipe --setting full-en-de --rescore   # a finished run's decoding chosen and scored again

Steps: shared BPE tokenizer -> training with the paper's recipe -> averaging of the last
checkpoints -> sacreBLEU on test2016 with beam search -> a few example translations. It prints
where the model, the results, the training curves and the model card are.

A run writes only into its own folder (`output_dir`, e.g. `runs/multi30k-de-en/`); its model card
is `model/README.md` there. The cards committed in `model_cards/` change only when asked:
`--refresh-cards` copies the card of each setting's finished run to `model_cards/<run name>.md`
(the run name is the last part of its `output_dir`), and `--card PATH` copies this run's card.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from train.config import TrainConfig
from train.lines import write_text_atomic
from train.time_budget import RUN_STARTED
from train.train import rescore, train

CONFIGS = Path(__file__).with_name("configs")
SETTINGS = {
    "quick": CONFIGS / "multi30k_de_en.yaml",
    "full": CONFIGS / "multi30k_de_en_full.yaml",
    "full-en-de": CONFIGS / "multi30k_en_de_full.yaml",
    "full-en-de-lc-tok": CONFIGS / "multi30k_lc_tok_en_de_full.yaml",
    "tatoeba-zh-en": CONFIGS / "tatoeba_zh_en.yaml",
    "tatoeba-en-zh": CONFIGS / "tatoeba_en_zh.yaml",
}
"""The recipe's settings (`--setting NAME`): Multi30k De->En quick (the default), the long runs of Multi30k
De->En (full) and En->De (full-en-de; full-en-de-lc-tok on Multi30k's lowercased, tokenised text, as published
systems train), and Tatoeba cmn-eng in both directions (Chinese output scored with
sacreBLEU's `zh` tokenizer)."""
MODEL_CARDS = Path(__file__).resolve().parents[1] / "model_cards"
"""The project's committed model cards."""


def refresh_cards(cards_dir: Path = MODEL_CARDS, overrides: Sequence[str] = (), rewrite: bool = False) -> list[Path]:
    """Copy the model card of each setting's finished run to `cards_dir/<run name>.md`, and its
    `summary.json` (metrics with signatures, steps, time, precision, seed, machine) to
    `<run name>.results.json`; returns the files written. Settings without a finished run are
    skipped; none at all is an error. With `rewrite`, each card is first built again with the current
    card code from what its run saved (`train.model_card.rewrite_model_card`)."""
    written = []
    run_dirs = [Path(TrainConfig.load(setting, list(overrides)).output_dir) for setting in SETTINGS.values()]
    for output_dir in dict.fromkeys(run_dirs):  # once each
        card = output_dir / "model" / "README.md"
        if card.is_file():
            if rewrite:
                from train.model_card import rewrite_model_card

                rewrite_model_card(output_dir)
            target = cards_dir / f"{output_dir.name}.md"
            shutil.copyfile(card, target)
            written.append(target)
            summary = output_dir / "summary.json"
            if summary.is_file():  # the card's numbers, with the machine, time and seed they came from
                results = {k: v for k, v in json.loads(summary.read_text()).items() if k not in ("examples", "plot")}
                target = cards_dir / f"{output_dir.name}.results.json"
                target.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                written.append(target)
    if not written:
        settings = ", ".join(SETTINGS)
        raise FileNotFoundError(f"no finished recipe run ({settings}) has a model card yet; run the recipe first")
    return written


def report(cfg: TrainConfig, summary: dict, model_dir: Path) -> None:
    """Print a finished run's example translations, results and where its files are."""
    if summary.get("examples"):
        print(f"\nExample translations ({cfg.test_split} split):\n")
        for example in summary["examples"]:
            print(f"  {cfg.src_lang}: {example['source']}")
            print(f"  MT: {example['translation']}\n  ref: {example['reference']}\n")
    tuning = summary.get("decoding_tuning")
    if tuning:
        print(f"Decoding chosen on {tuning['split']}: {tuning['best']} (of {len(tuning['grid'])} settings tried)")
    test = summary.get("test", {})
    print(f"Model:           {model_dir}")
    if test:
        print(f"Test results:    {model_dir / f'results.{cfg.test_split}.json'}")
        print(f"  BLEU {test['bleu']:.2f}  {test['bleu_signature']}")
        print(f"  chrF {test['chrf']:.2f}  {test['chrf_signature']}")
        if "bleu_tok_lc" in test:
            print(f"  BLEU (lowercased, Moses-tokenised, as in Multi30k papers) {test['bleu_tok_lc']:.2f}")
    print(f"Training curves: {summary.get('plot')}")
    print(f"Metrics log:     {Path(cfg.output_dir) / 'metrics.jsonl'}")
    print(f"Model card:      {model_dir / 'README.md'}")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="quick")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--card", default=None, help="also copy this run's model card to this path")
    parser.add_argument(
        "--refresh-cards",
        action="store_true",
        help=f"do not train: copy the finished runs' model cards into {MODEL_CARDS.name}/ (make cards)",
    )
    parser.add_argument(
        "--rewrite-cards",
        action="store_true",
        help="as --refresh-cards, but first build each finished run's card again with the current card code",
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="do not train: evaluate the setting's finished run again with its current decoding settings "
        "(tune_num_beams, tune_length_penalties, test_num_beams, length_penalty), updating its results and card",
    )
    parser.add_argument("overrides", nargs="*", help="key=value TrainConfig overrides")
    args = parser.parse_args(argv)
    if args.refresh_cards or args.rewrite_cards:
        for card in refresh_cards(overrides=args.overrides, rewrite=args.rewrite_cards):
            print(f"updated {card}")
        return {}
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = TrainConfig.load(SETTINGS[args.setting], args.overrides)
    if args.rescore:
        summary = rescore(cfg)
        report(cfg, summary, Path(summary["model_dir"]))
        return summary
    start = time.perf_counter()
    summary = train(cfg, resume=args.resume)
    model_dir = Path(summary["model_dir"])
    report(cfg, summary, model_dir)
    if args.card:
        Path(args.card).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / "README.md", args.card)
    summary["recipe_minutes"] = (time.perf_counter() - start) / 60
    minutes = f"{summary['recipe_minutes']:.1f} minutes"
    if cfg.max_total_minutes is not None and RUN_STARTED in os.environ:  # a time train() has checked
        summary["minutes_since_run_started"] = (time.time() - float(os.environ[RUN_STARTED])) / 60
        minutes += f"; {summary['minutes_since_run_started']:.1f} since ${RUN_STARTED}"
    write_text_atomic(Path(cfg.output_dir) / "summary.json", json.dumps(summary, indent=2, default=str))
    print(f"Run summary:     {Path(cfg.output_dir) / 'summary.json'}  ({minutes})")
    return summary


if __name__ == "__main__":
    main()
