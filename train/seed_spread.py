"""How much a setting's result moves with the seed: finished runs of one setting, differing only in `seed`.

    python -m train.recipe seed=2 output_dir=runs/multi30k-de-en-seed2        # one more seed of `make recipe`
    python -m train.seed_spread runs/multi30k-de-en runs/multi30k-de-en-seed2 runs/multi30k-de-en-seed3 \\
        --json results/recipe-seeds.json

Reads each run's `summary.json` and writes one row per run (seed, steps, epochs, the best validation BLEU during
training, the decoding chosen on validation, test BLEU and chrF) and, for each score, the mean, the sample standard
deviation, the lowest and the highest. The runs must be of one setting: the same data, direction and training
settings but for the seed and the output folder (checked on their `train_config.json`), and one machine (a
time-budgeted run makes as many steps as its CPU allows). `python -m train.results_tables` shows the file as the
README's `recipe-seeds` table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from train.compare_baseline import finished_summary

SCORES = ("validation_bleu", "bleu", "chrf")
"""The scores whose spread is reported: the best validation BLEU during training, test BLEU, test chrF."""
ALLOWED_TO_DIFFER = ("seed", "output_dir")


def run_row(run_dir: Path) -> dict[str, Any]:
    """One finished run's seed, training and scores, from its `summary.json`."""
    summary = finished_summary(run_dir)
    if summary is None:
        raise ValueError(f"{run_dir}: no finished run here (no summary.json with test results)")
    test = summary["test"]
    return {
        "run": str(run_dir),
        "seed": summary.get("seed"),
        "steps": summary["steps"],
        "epochs": summary.get("epochs"),
        "minutes_until_trained": summary.get("minutes_until_trained"),
        "precision": summary.get("precision"),
        "machine": summary.get("machine"),
        "validation_bleu": summary.get("best_validation_bleu"),
        "num_beams": test.get("num_beams"),
        "length_penalty": test.get("length_penalty"),
        "dataset": test.get("dataset"),
        "split": test.get("split"),
        "bleu": test["bleu"],
        "bleu_signature": test.get("bleu_signature"),
        "chrf": test.get("chrf"),
        "chrf_signature": test.get("chrf_signature"),
    }


def check_one_setting(run_dirs: Sequence[Path]) -> None:
    """Raise a `ValueError` naming the setting that differs if the runs differ in more than their seed and folder
    (the machines are checked by `seed_spread`)."""
    configs = {}
    for run_dir in run_dirs:
        path = run_dir / "train_config.json"
        if not path.is_file():
            raise ValueError(f"{run_dir}: no train_config.json, so it cannot be checked to be the same setting")
        config = json.loads(path.read_text(encoding="utf-8"))
        configs[run_dir] = {key: value for key, value in config.items() if key not in ALLOWED_TO_DIFFER}
    first, *rest = run_dirs
    for run_dir in rest:
        differ = sorted(
            key
            for key in configs[first].keys() | configs[run_dir].keys()
            if configs[first].get(key) != configs[run_dir].get(key)
        )
        if differ:
            raise ValueError(f"{first} and {run_dir} differ in more than the seed: {', '.join(differ)}")


def _machine(machine: dict | None) -> tuple:
    """The CPU and what the process chose that sets its speed (threads, allocator, oneDNN's cache)."""
    machine = machine or {}
    return (
        machine.get("cpu"),
        tuple(machine.get("cpu_flags") or ()),
        *(machine.get(key) for key in ("torch_threads", "memory_allocator", "onednn_primitive_cache")),
    )


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (0 for one value), lowest and highest."""
    return {
        "mean": statistics.mean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


def seed_spread(run_dirs: Sequence[str | Path]) -> dict[str, Any]:
    """The rows of `run_dirs` (finished runs of one setting) and the spread of each score over them."""
    run_dirs = [Path(run_dir) for run_dir in run_dirs]
    if len(run_dirs) < 2:
        raise ValueError("a spread needs at least two runs")
    rows = [run_row(run_dir) for run_dir in run_dirs]
    check_one_setting(run_dirs)
    machines = {_machine(row["machine"]) for row in rows}
    if len(machines) > 1:
        raise ValueError(
            f"the runs ran on different machines or process settings ({sorted(map(str, machines))}): a "
            "time-budgeted run's steps depend on its CPU"
        )
    seeds = [row["seed"] for row in rows]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"the runs must differ in their seed, got seeds {seeds}")
    return {
        "runs": rows,
        "spread": {
            score: spread([row[score] for row in rows])
            for score in SCORES
            if all(row[score] is not None for row in rows)
        },
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="finished run folders of one setting (with summary.json)")
    parser.add_argument("--json", type=Path, help="write the rows and the spread here")
    args = parser.parse_args(argv)
    try:
        result = seed_spread(args.runs)
    except ValueError as error:
        parser.error(str(error))
    result["command"] = "python -m train.seed_spread " + " ".join(sys.argv[1:] if argv is None else argv)
    text = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text, encoding="utf-8")
    for score, values in result["spread"].items():
        print(f"{score}: {values['mean']:.2f} ± {values['sd']:.2f} (from {values['min']:.2f} to {values['max']:.2f})")
    return result


if __name__ == "__main__":
    main()
