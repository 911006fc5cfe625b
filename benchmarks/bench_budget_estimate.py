"""How well a total time budget (`max_total_minutes`) foresees the work after training, before and after learning.

    python benchmarks/bench_budget_estimate.py runs/NAME --json benchmarks/results/budget-estimate.json

`train.time_budget.AfterTrainingTimer` times `TIMED_SENTENCES` validation sources and extrapolates to every
translation after training (the decoding grid, the test). At each validation it times the model's real outputs;
as training begins, when an untrained model's outputs would run to the length limit, it holds every output to
its references' mean length instead. This takes a finished run (its folder: `train_config.json` and `model/`)
and, in the same process, on a quiet machine, wall clock, medians over `--rounds`, with the run's largest beam:

- `sample, real outputs`: what the timer measures at a validation (the trained model);
- `whole split, real outputs`: the truth it extrapolates to (every validation sentence, the trained model);
- `sample, outputs of the references' mean length`: what it measures as training begins, with the trained model
  and with an untrained one of the same config (the same cost, whatever the weights, is the point);
- `sample, untrained, outputs unheld`: what timing the untrained model without holding its outputs would give;
- the same for greedy validation (`eval_num_beams`), which the budget also keeps time for.

Each row is printed as seconds per sentence and as a ratio to the whole split's real translation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def whole_split_seconds(model, tokenizer, sources: list[str], beams: int) -> float:
    """Seconds per sentence of translating all of `sources` with `beams`."""
    from train.translate import translate

    start = time.perf_counter()
    translate(model, tokenizer, sources, num_beams=beams)
    return (time.perf_counter() - start) / len(sources)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished training run's folder (train_config.json, model/)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import torch

    import hf_vanilla_transformer as hvt
    from benchmarks.bench_model import cpu_description
    from train.config import TrainConfig
    from train.data import load_corpus
    from train.model_folder import load_model
    from train.time_budget import TIMED_SENTENCES, after_training_timer

    torch.set_num_threads(args.threads)
    cfg = TrainConfig.from_dict(json.loads((args.run / "train_config.json").read_text()))
    raw = load_corpus(cfg.dataset, cfg.src_lang, cfg.tgt_lang, data_dir=cfg.data_dir)
    trained, tokenizer = load_model(args.run / "model")
    torch.manual_seed(0)
    untrained = hvt.VanillaTransformerForConditionalGeneration(trained.config).eval()
    untrained.generation_config = trained.generation_config
    timer = after_training_timer(cfg, trained, tokenizer, raw)
    if timer is None:
        raise SystemExit(f"{args.run}: the run translates nothing after training, so there is nothing to estimate")
    length = timer.reference_length()
    validation_sources = list(raw[cfg.eval_split]["src"])
    rows: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        for beams, kind in ((timer.beams, "after training"), (timer.validation_beams, "validation")):
            measured = {
                "whole split, real outputs": whole_split_seconds(trained, tokenizer, validation_sources, beams),
                "sample, real outputs": timer.seconds_per_sentence(trained, beams),
                "sample, trained, outputs of the references' mean length": timer.seconds_per_sentence(
                    trained, beams, length
                ),
                "sample, untrained, outputs of the references' mean length": timer.seconds_per_sentence(
                    untrained, beams, length
                ),
                "sample, untrained, outputs unheld": timer.seconds_per_sentence(untrained, beams),
            }
            for name, seconds in measured.items():
                rows.setdefault(f"{kind} (beam {beams}): {name}", []).append(seconds)
            print(f"round {round_ + 1}, {kind}: {measured}", file=sys.stderr)
    table = []
    for kind, beams in (("after training", timer.beams), ("validation", timer.validation_beams)):
        truth = statistics.median(rows[f"{kind} (beam {beams}): whole split, real outputs"])
        for name, values in rows.items():
            if name.startswith(f"{kind} (beam {beams})"):
                seconds = statistics.median(values)
                table.append({"row": name, "seconds_per_sentence": seconds, "ratio_to_whole_split": seconds / truth})
                print(f"{name:95s} {1000 * seconds:7.1f} ms/sentence  {seconds / truth:5.2f}x")
    if args.json:
        record = {
            "machine": cpu_description() | {"threads": args.threads, "clock": "wall", "torch": torch.__version__},
            "command": " ".join(["python", *sys.argv]),
            "run": str(args.run),
            "dataset": f"{cfg.dataset} {cfg.eval_split} {cfg.src_lang}-{cfg.tgt_lang}",
            "timed_sentences": TIMED_SENTENCES,
            "whole_split_sentences": len(validation_sources),
            "references_mean_length_tokens": length,
            "rounds": args.rounds,
            "rows": table,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
