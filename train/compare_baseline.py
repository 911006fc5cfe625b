"""The recipe against plain Hugging Face, on this machine: both trained for the same minutes, one after the other.

    python -m train.compare_baseline                        # make compare: ~30 minutes on 2 cores
    python -m train.compare_baseline --skip-recipe runs/multi30k-de-en   # reuse a finished recipe run
    python -m train.compare_baseline --seed 2 max_train_minutes=6        # key=value: recipe overrides

1. The recipe (`--setting`, default `quick`: `python -m train.recipe`) trains into `<work>/recipe`
   (resumed if interrupted; reused if it has finished), or `--skip-recipe RUN_DIR` names a finished
   run (`summary.json` with test results) to use instead.
2. The plain-HF baseline (`train.baseline`: `MarianMTModel` of the same size with `Seq2SeqTrainer`,
   `group_by_length`, its own standard settings) trains into `<work>/baseline` for the minutes of
   training the recipe took: its `train_runtime` (wall clock of `Trainer.train`, which includes the
   recipe's validations and checkpoint saves; the baseline neither validates nor saves, so all of its
   minutes are training steps), plus the minutes the recipe spent on its word vectors before. A finished
   baseline with the same minutes, seed and settings is reused.
3. Both are scored the same way: sacreBLEU (and chrF) on the setting's test split (test2016 for
   Multi30k), beam 4. `results/recipe-vs-baseline.json` gets both results with their signatures,
   minutes, steps, epochs, precision, the machine, the seed and the difference, and is printed.

Settings are the recipe's and the baseline's own; none is tuned on the test split.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from train.baseline import BaselineSettings, add_baseline_arguments, recipe_config, train_baseline
from train.callbacks import read_metrics
from train.config import TrainConfig
from train.evaluate import write_results
from train.init_embeddings import word2vec_minutes
from train.precision import machine_description
from train.recipe import SETTINGS
from train.train import last_complete_checkpoint, train

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parents[1] / "results" / "recipe-vs-baseline.json"
SCORE_KEYS = ("bleu", "bleu_signature", "chrf", "chrf_signature")


def finished_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """The `summary.json` of a finished training run (one with test results), else None."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None
    summary = json.loads(path.read_text(encoding="utf-8"))
    return summary if summary.get("test") else None


def training_minutes(run_dir: str | Path, fallback: float | None = None) -> tuple[float, str]:
    """Minutes of `Trainer.train` of a run (`train_runtime` in its `metrics.jsonl`; an interrupted and
    resumed run logs several, which are summed) and where the number came from. Without a log:
    `fallback` (the configured time budget), else a `ValueError`."""
    metrics = Path(run_dir) / "metrics.jsonl"
    rows = read_metrics(metrics) if metrics.is_file() else []
    runtimes = [row["train_runtime"] for row in rows if "train_runtime" in row]
    if runtimes:
        return sum(runtimes) / 60, f"train_runtime in {metrics}"
    if fallback is not None:
        return float(fallback), "max_train_minutes of the recipe (its metrics.jsonl has no train_runtime)"
    raise ValueError(f"{run_dir}: no train_runtime in metrics.jsonl and no time budget to fall back on")


def run_recipe(cfg: TrainConfig) -> dict[str, Any]:
    """Train the recipe into `cfg.output_dir`, resuming an interrupted run; a finished run is reused."""
    summary = finished_summary(cfg.output_dir)
    if summary is not None:
        logger.info("recipe: reusing the finished run in %s", cfg.output_dir)
        return summary
    output_dir = Path(cfg.output_dir)
    resume = output_dir.is_dir() and last_complete_checkpoint(output_dir) is not None
    return train(cfg, resume=resume)


def recipe_entry(summary: dict[str, Any], run_dir: Path, minutes: float, minutes_source: str, command: str) -> dict:
    """The recipe's half of the comparison."""
    test = summary["test"]
    return {
        "command": command,
        "run_dir": str(run_dir),
        **{key: test[key] for key in SCORE_KEYS},
        "decoding": f"beam {test['num_beams']}, length penalty {test['length_penalty']} "
        f"({test['length_penalty_form']})",
        "steps": summary["steps"],
        "epochs": summary["epochs"],
        "training_minutes": minutes,
        "training_minutes_source": minutes_source,
        "precision": summary.get("precision"),
        "seed": summary.get("seed"),
        "machine": summary.get("machine"),
    }


def baseline_entry(results: dict[str, Any], command: str) -> dict:
    """The baseline's half of the comparison."""
    keys = (*SCORE_KEYS, "model", "decoding", "steps", "epochs", "stopped_by", "training_minutes", "precision")
    return {
        "command": command,
        **{key: results[key] for key in keys},
        "seed": results["seed"],
        "settings": results["settings"],
        "machine": results["machine"],
    }


def reusable_baseline(path: Path, settings: BaselineSettings) -> dict[str, Any] | None:
    """The results at `path` if they are of a finished baseline with exactly `settings`, else None."""
    if not path.is_file():
        return None
    results = json.loads(path.read_text(encoding="utf-8"))
    return results if results.get("settings") == dataclasses.asdict(settings) else None


def compare(
    setting: str = "quick",
    *,
    overrides: Sequence[str] = (),
    seed: int | None = None,
    work_dir: str | Path = "runs/compare",
    skip_recipe: str | Path | None = None,
    baseline: dict[str, Any] | None = None,
    output: str | Path = RESULTS,
) -> dict[str, Any]:
    """Steps 1-3 of the module docstring; returns what it writes to `output`. `baseline`: settings
    of `BaselineSettings` other than minutes, seed and output folder."""
    work_dir = Path(work_dir)
    extra = [f"seed={seed}"] if seed is not None else []
    if skip_recipe is None:
        cfg = TrainConfig.load(SETTINGS[setting], [*overrides, *extra, f"output_dir={work_dir / 'recipe'}"])
        summary = run_recipe(cfg)
        run_dir = Path(cfg.output_dir)
        command = " ".join(["python -m train.recipe", f"--setting {setting}", *overrides, *extra])
    else:
        run_dir = Path(skip_recipe)
        summary = finished_summary(run_dir)
        if summary is None:
            raise FileNotFoundError(f"--skip-recipe {run_dir}: no finished run there (summary.json with test results)")
        cfg = recipe_config(run_dir / "train_config.json")
        command = f"the finished run in {run_dir} (its settings: {run_dir / 'train_config.json'})"
    minutes, minutes_source = training_minutes(run_dir, cfg.max_train_minutes)
    vectors = word2vec_minutes(run_dir)  # the recipe's time before training: the baseline gets it too
    if vectors:
        minutes, minutes_source = minutes + vectors, f"{minutes_source} + {vectors:.2f} min of word2vec before it"

    settings = BaselineSettings(
        **(baseline or {}),
        minutes=minutes,
        seed=cfg.seed,
        num_threads=cfg.num_threads,  # as the recipe ran (torch's default when it set none)
        output_dir=str(work_dir / "baseline"),
    )
    results_path = Path(settings.output_dir) / f"results.{cfg.test_split}.json"
    baseline_results = reusable_baseline(results_path, settings)
    if baseline_results is None:
        baseline_results = train_baseline(cfg, settings)
    else:
        logger.info("baseline: reusing the finished run in %s", settings.output_dir)
    baseline_command = (
        f"python -m train.baseline --config {run_dir / 'train_config.json'} --minutes {minutes:.2f} --seed {cfg.seed} "
        f"--sampling {settings.sampling} --batch-size {settings.batch_size} --max-steps {settings.max_steps} "
        f"--learning-rate {settings.learning_rate:g}"
    )

    recipe = recipe_entry(summary, run_dir, minutes, minutes_source, command)
    plain = baseline_entry(baseline_results, baseline_command)
    # A plain-HF schedule has a fixed length: on a fast CPU it can end before the minutes do, and the
    # baseline would then have trained for less time than the recipe. Say so, and record it.
    used_its_minutes = not (plain["stopped_by"] == "max_steps" and plain["training_minutes"] < 0.95 * minutes)
    if not used_its_minutes:
        logger.warning(
            "the baseline's linear decay (--max-steps %d) ended after %.1f of its %.1f minutes: it trained for less "
            "time than the recipe; raise --max-steps so that its schedule fills the time",
            settings.max_steps,
            plain["training_minutes"],
            minutes,
        )
    machine = machine_description()
    same_machine = all(_same_machine(entry["machine"], machine) for entry in (recipe, plain))
    if not same_machine:
        logger.warning("the recipe and the baseline were not measured on this same machine: compare with care")
    comparison = {
        "command": " ".join(
            ["python -m train.compare_baseline"]
            + ([f"--setting {setting}"] if setting != "quick" else [])
            + ([f"--seed {seed}"] if seed is not None else [])
            + ([f"--skip-recipe {skip_recipe}"] if skip_recipe else [])
            + ([f"--max-steps {settings.max_steps}"] if settings.max_steps != BaselineSettings.max_steps else [])
            + list(overrides)
        ),
        "setting": setting,
        "dataset": cfg.dataset,
        "language_pair": f"{cfg.src_lang}-{cfg.tgt_lang}",
        "test_split": cfg.test_split,
        "seed": cfg.seed,
        "machine": machine,
        "same_machine": same_machine,
        "baseline_used_its_minutes": used_its_minutes,
        "recipe": recipe,
        "baseline": plain,
        "bleu_difference": recipe["bleu"] - plain["bleu"],
        "chrf_difference": recipe["chrf"] - plain["chrf"],
    }
    write_results(output, comparison)
    return comparison


# In `machine_description`, but chosen by the process, not the machine.
PROCESS_SETTINGS = ("memory_allocator", "onednn_primitive_cache")


def _same_machine(recorded: dict | None, current: dict) -> bool:
    """Same CPU, flags, threads and library versions (`machine_description`; not `PROCESS_SETTINGS`)."""
    return recorded is not None and all(
        recorded.get(key) == current.get(key) for key in current if key not in PROCESS_SETTINGS
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="quick")
    parser.add_argument("--seed", type=int, default=None, help="seed of both runs (default: the setting's)")
    parser.add_argument("--work-dir", default="runs/compare", help="where the two runs are written")
    parser.add_argument("--skip-recipe", metavar="RUN_DIR", default=None, help="use this finished recipe run")
    parser.add_argument("--output", default=str(RESULTS))
    add_baseline_arguments(parser)
    parser.add_argument("overrides", nargs="*", help="key=value TrainConfig overrides of the recipe")
    args = parser.parse_args(argv)
    if args.skip_recipe and (args.overrides or args.seed is not None):
        parser.error("--skip-recipe uses the finished run's own settings: no overrides or --seed with it")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    comparison = compare(
        args.setting,
        overrides=args.overrides,
        seed=args.seed,
        work_dir=args.work_dir,
        skip_recipe=args.skip_recipe,
        baseline=dict(
            sampling=args.sampling,
            batch_size=args.batch_size,
            max_steps=args.max_steps,
            learning_rate=args.learning_rate,
        ),
        output=args.output,
    )
    print(json.dumps(comparison, indent=2, ensure_ascii=False))
    recipe, plain = comparison["recipe"], comparison["baseline"]
    for name, entry in (("recipe", recipe), ("baseline", plain)):
        print(
            f"{name:9s}{entry['bleu']:6.2f} BLEU {entry['chrf']:6.2f} chrF  "
            f"({entry['steps']} steps, {entry['training_minutes']:.1f} min of training)"
        )
    difference = f"{comparison['bleu_difference']:+.2f} BLEU, {comparison['chrf_difference']:+.2f} chrF"
    print(f"difference {difference} -> {args.output}")
    return comparison


if __name__ == "__main__":
    main()
