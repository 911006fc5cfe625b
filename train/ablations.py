"""Ablations in the spirit of the paper's Table 3: one change at a time to the quick recipe, same time budget and seed.

    python -m train.ablations                              # every row, seed 1 (make ablations): ~13 min a row
    python -m train.ablations --rows recipe,heads-1 --seeds 1,2,3 --minutes 12
    python -m train.ablations --table                      # print the markdown table of the results so far
    python -m train.ablations --plot recipe,heads-1,pre-ln # validation BLEU against training minutes

Each row (`ABLATIONS`) is a set of `TrainConfig` overrides of the quick recipe (`train.recipe.SETTINGS`)
with the paper's random embedding initialisation (`PAPER_BASE`: the recipe's word2vec start is itself a row,
`init-word2vec`)
and trains into `runs/ablations/<row>-seed<k>/` for `--minutes` (the recipe's `max_train_minutes` by
default). Two rows train nothing: they score the `recipe` run of the same seed another way
(`no-averaging`: its last checkpoint instead of the average of the last 5, §6.1; `greedy`: its
averaged model decoded greedily instead of with beam 4). Every row writes
`results/ablations/<row>-seed<k>.json`: BLEU and chrF with their sacreBLEU signatures on the whole
validation split and on the test split (test2016), the decoding, steps, epochs, training minutes,
precision, seed and machine. A row whose results file exists is skipped, so an interrupted sweep
continues where it stopped (an interrupted training resumes from its last checkpoint).

Rows are chosen and compared on validation; test2016 is reported, never used to choose. The
pre-LN/post-LN comparison gives each its own learning rate: rows of one `lr_group` differ only in the
learning rate, and the table marks the one with the best validation BLEU.

Every override names a real setting: `TrainConfig` fields, or `model.<field>` of
`VanillaTransformerConfig` (`encoder_attention_heads`, `position_embedding_type`, `layer_norm_position`,
`scale_embedding`, `share_encoder_decoder_embeddings`, `tie_word_embeddings`), which
`TrainConfig.check_values` verifies; `tests/test_train_ablations.py` checks each row's model config.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from train.callbacks import read_metrics
from train.compare_baseline import finished_summary, training_minutes
from train.config import TrainConfig
from train.data import load_corpus, lowercased_tokenized_scoring
from train.evaluate import write_results
from train.evaluate_model import evaluate_translations
from train.model_folder import load_model
from train.precision import machine_description
from train.recipe import SETTINGS
from train.train import last_complete_checkpoint, train

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "results" / "ablations"
FIGURE = REPO_ROOT / "docs" / "figures" / "ablations-val-bleu.png"
SCORE_KEYS = ("bleu", "bleu_signature", "chrf", "chrf_signature")


@dataclass(frozen=True)
class Ablation:
    """One row of the table: what changes, relative to the quick recipe."""

    name: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    """`TrainConfig` overrides (`model.<field>` for the model's config) of the trained rows."""
    scored_from: str | None = None
    """For rows that train nothing: the row whose run (same seed) they score."""
    checkpoint: str = "averaged"
    """`averaged` (the run's `model/`, the last checkpoints averaged) or `last` (its last checkpoint)."""
    num_beams: int | None = None
    """Decoding beam of validation and test (None: the model's generation config, beam 4)."""
    lr_group: str | None = None
    """Rows that differ only in the learning rate; the table marks the best on validation."""


ABLATIONS: tuple[Ablation, ...] = (
    Ablation("recipe", "the quick recipe: 4 heads, sinusoidal, label smoothing 0.1, post-LN, tied, averaged, beam 4",
             lr_group="post-LN"),
    Ablation("heads-1", "1 head (d_k = d_v = d_model), as Table 3 row A",
             {"model.encoder_attention_heads": 1, "model.decoder_attention_heads": 1}),
    Ablation("heads-8", "8 heads (d_k = d_v = d_model / 8), as Table 3 row A",
             {"model.encoder_attention_heads": 8, "model.decoder_attention_heads": 8}),
    Ablation("learned-positions", "learned instead of sinusoidal position embeddings, Table 3 row E",
             {"model.position_embedding_type": "learned"}),
    Ablation("no-label-smoothing", "no label smoothing (ε_ls = 0; §5.4 uses 0.1), Table 3 row D",
             {"label_smoothing": 0.0}),
    Ablation("post-ln-lr2x", "post-LN at twice the recipe's peak learning rate",
             {"lr_factor": 0.5}, lr_group="post-LN"),
    Ablation("pre-ln", "pre-LN (x + Sublayer(LayerNorm(x)), final LayerNorm) at the recipe's learning rate",
             {"model.layer_norm_position": "pre"}, lr_group="pre-LN"),
    Ablation("pre-ln-lr2x", "pre-LN at twice the recipe's peak learning rate",
             {"model.layer_norm_position": "pre", "lr_factor": 0.5}, lr_group="pre-LN"),
    Ablation("pre-ln-lr4x", "pre-LN at four times the recipe's peak learning rate",
             {"model.layer_norm_position": "pre", "lr_factor": 1.0}, lr_group="pre-LN"),
    Ablation("no-embedding-scale", "embeddings not multiplied by sqrt(d_model) (§3.4 does)",
             {"model.scale_embedding": False}),
    Ablation("untied-embeddings", "separate source, target and output embeddings (§3.4 shares all three)",
             {"model.share_encoder_decoder_embeddings": False, "model.tie_word_embeddings": False}),
    Ablation("unscaled-scores", "dot products not divided by sqrt(d_k) (§3.2.1's argument; explain/score_variance.py)",
             {"model.attention_score": "dot_product"}),
    Ablation("additive-scores", "additive attention w_v^T tanh(W_q q + W_k k) per head (Bahdanau et al.; §3.2.1)",
             {"model.attention_score": "additive"}),
    Ablation("cooldown-0.2", "not in the paper: the rate falls linearly to 0 over the last 20% of the time budget",
             {"cooldown_fraction": 0.2}),
    Ablation("init-word2vec", "not in the paper: the embedding starts from skip-gram vectors of the training text",
             {"init_embeddings": "word2vec"}),
    Ablation("no-averaging", "the recipe's run, its last checkpoint instead of the average of the last 5 (§6.1)",
             scored_from="recipe", checkpoint="last"),
    Ablation("greedy", "the recipe's run (averaged) decoded greedily instead of with beam 4 (§6.1)",
             scored_from="recipe", num_beams=1),
)  # fmt: skip
BY_NAME = {ablation.name: ablation for ablation in ABLATIONS}


PAPER_BASE = {"init_embeddings": None, "tune_num_beams": None, "tune_length_penalties": None}
"""What every row changes in the quick setting before its own change: the paper's random embedding init, and its
decoding (§6.1: beam 4, length penalty 0.6) instead of a length penalty chosen on validation, so that the rows
differ in training only."""


def row_config(ablation: Ablation, seed: int, *, minutes: float | None, runs_dir: Path, overrides=()) -> TrainConfig:
    """The `TrainConfig` of a trained row: the quick setting with `PAPER_BASE`, then `overrides` (for every row),
    then the row's own, the seed, the time budget and `runs_dir/<row>-seed<k>`."""
    if ablation.scored_from is not None:
        raise ValueError(f"row {ablation.name!r} trains nothing: it scores the {ablation.scored_from!r} run")
    values = [f"{key}={json.dumps(value)}" for key, value in PAPER_BASE.items()]
    values += [*overrides, *(f"{key}={json.dumps(value)}" for key, value in ablation.overrides.items())]
    values += [f"seed={seed}", f"output_dir={runs_dir / f'{ablation.name}-seed{seed}'}"]
    if minutes is not None:
        values.append(f"max_train_minutes={minutes}")
    return TrainConfig.load(SETTINGS["quick"], values)


def results_path(results_dir: Path, name: str, seed: int) -> Path:
    return Path(results_dir) / f"{name}-seed{seed}.json"


def score_run(cfg: TrainConfig, ablation: Ablation, raw, final_step: int) -> dict[str, dict[str, Any]]:
    """Validation and test scores of a finished run of `cfg` (which ended at `final_step`), scored as
    `ablation` says: which model folder, which beam (else the run's `test_num_beams`, else the model's
    generation config); hypotheses and results go to `<run>/ablation-scores/<row>/`."""
    run_dir = Path(cfg.output_dir)
    if ablation.checkpoint == "last":
        model_dir = last_complete_checkpoint(run_dir)
        if model_dir is None or model_dir.name != f"checkpoint-{final_step}":
            raise FileNotFoundError(f"{run_dir}: no checkpoint of the final step {final_step} to score unaveraged")
    else:
        model_dir = run_dir / "model"
    model, tokenizer = load_model(model_dir)
    scores = {"model_dir": str(model_dir)}
    for split in (cfg.eval_split, cfg.test_split):
        results, _ = evaluate_translations(
            model,
            tokenizer,
            raw[split],
            output_dir=run_dir / "ablation-scores" / ablation.name,
            meta={"model": str(model_dir), "dataset": cfg.dataset, "split": split},
            tgt_lang=cfg.tgt_lang,
            tokenized_refs=lowercased_tokenized_scoring(cfg.dataset, split, cfg.tgt_lang, cfg.data_dir),
            num_beams=ablation.num_beams or cfg.test_num_beams,
            length_penalty=cfg.length_penalty,
        )
        scores["validation" if split == cfg.eval_split else "test"] = results
    return scores


def run_row(
    ablation: Ablation,
    seed: int,
    *,
    minutes: float | None = None,
    runs_dir: Path = Path("runs/ablations"),
    results_dir: Path = RESULTS_DIR,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Train (or resume, or reuse) the run of `ablation` and seed `seed`, score it and write its
    results file; a row whose results file exists is read, not recomputed."""
    path = results_path(results_dir, ablation.name, seed)
    if path.is_file():
        logger.info("%s exists: skipping row %s, seed %d", path, ablation.name, seed)
        return json.loads(path.read_text(encoding="utf-8"))
    trained = BY_NAME[ablation.scored_from] if ablation.scored_from else ablation
    cfg = row_config(trained, seed, minutes=minutes, runs_dir=Path(runs_dir), overrides=overrides)
    summary = finished_summary(cfg.output_dir)
    if summary is None:
        logger.info("row %s, seed %d: training %s", trained.name, seed, cfg.output_dir)
        output_dir = Path(cfg.output_dir)
        summary = train(cfg, resume=output_dir.is_dir() and last_complete_checkpoint(output_dir) is not None)
    raw = load_corpus(cfg.dataset, cfg.src_lang, cfg.tgt_lang, data_dir=cfg.data_dir)
    scores = score_run(cfg, ablation, raw, summary["steps"])
    minutes_trained, _ = training_minutes(cfg.output_dir, cfg.max_train_minutes)
    validation, test = scores["validation"], scores["test"]
    result = {
        "row": ablation.name,
        "description": ablation.description,
        "overrides": trained.overrides,
        "scored_from": ablation.scored_from,
        "checkpoint": ablation.checkpoint,
        "lr_group": ablation.lr_group,
        "command": f"python -m train.ablations --rows {ablation.name} --seeds {seed}"
        + (f" --minutes {minutes:g}" if minutes is not None else "")
        + "".join(f" {item}" for item in overrides),
        "run_dir": cfg.output_dir,
        "model_dir": scores["model_dir"],
        "dataset": cfg.dataset,
        "language_pair": f"{cfg.src_lang}-{cfg.tgt_lang}",
        "decoding": {key: test[key] for key in ("num_beams", "length_penalty", "length_penalty_form")},
        "validation": {"split": cfg.eval_split, **{key: validation[key] for key in SCORE_KEYS}},
        "test": {"split": cfg.test_split, **{key: test[key] for key in SCORE_KEYS}},
        "steps": summary["steps"],
        "epochs": summary["epochs"],
        "time_budget_minutes": cfg.max_train_minutes,
        "training_minutes": minutes_trained,
        "precision": summary.get("precision"),
        "seed": seed,
        "machine": summary.get("machine") or machine_description(),
    }
    if "bleu_tok_lc" in test:
        result["test"]["bleu_tok_lc"] = test["bleu_tok_lc"]
    write_results(path, result)
    return result


def run_ablations(
    rows: Sequence[str], seeds: Sequence[int], *, minutes: float | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """`run_row` for every row and seed, seed by seed, trained rows before the rows scored from them."""
    unknown = [name for name in rows if name not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown ablation row(s) {unknown}; rows: {list(BY_NAME)}")
    ordered = sorted(rows, key=lambda name: BY_NAME[name].scored_from is not None)
    return [run_row(BY_NAME[name], seed, minutes=minutes, **kwargs) for seed in seeds for name in ordered]


# ---------------------------------------------------------------------------- table and plot
def load_results(results_dir: Path = RESULTS_DIR) -> dict[str, list[dict[str, Any]]]:
    """Results files by row (in `ABLATIONS` order), each list sorted by seed."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(results_dir).glob("*-seed*.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        found.setdefault(result["row"], []).append(result)
    order = [a.name for a in ABLATIONS] + sorted(set(found) - set(BY_NAME))
    return {name: sorted(found[name], key=lambda r: r["seed"]) for name in order if name in found}


def mean_and_spread(values: Sequence[float]) -> str:
    """`36.1` for one value; `36.1 ± 0.4` (mean ± sample standard deviation) for several."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def best_of_lr_groups(results: dict[str, list[dict[str, Any]]]) -> set[str]:
    """In each `lr_group`, the row with the best mean validation BLEU."""
    groups: dict[str, list[tuple[float, str]]] = {}
    for name, runs in results.items():
        group = runs[0].get("lr_group")
        if group:
            groups.setdefault(group, []).append((statistics.mean(r["validation"]["bleu"] for r in runs), name))
    return {max(members)[1] for members in groups.values() if len(members) > 1}


def ablation_table(results_dir: Path = RESULTS_DIR) -> str:
    """The markdown table of the ablation results found (mean ± sd over seeds where there are several)."""
    results = load_results(results_dir)
    if not results:
        return "No ablation results yet: run `python -m train.ablations`.\n"
    best = best_of_lr_groups(results)
    reference = results.get("recipe")
    lines = [
        "| row | change from the quick recipe | seeds | steps | validation BLEU | test BLEU | Δ test BLEU "
        "| test chrF |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        seeds = [r["seed"] for r in runs]
        test_bleu = [r["test"]["bleu"] for r in runs]
        delta = "–"
        if reference and name != "recipe":
            by_seed = {r["seed"]: r["test"]["bleu"] for r in reference}
            shared = [r["test"]["bleu"] - by_seed[r["seed"]] for r in runs if r["seed"] in by_seed]
            delta = f"{statistics.mean(shared):+.1f}" if shared else "–"
        label = f"`{name}`" + (" (best LR of its group on validation)" if name in best else "")
        lines.append(
            f"| {label} | {runs[0]['description']} | {','.join(map(str, seeds))} | "
            f"{round(statistics.mean(r['steps'] for r in runs)):,} | "
            f"{mean_and_spread([r['validation']['bleu'] for r in runs])} | {mean_and_spread(test_bleu)} | {delta} | "
            f"{mean_and_spread([r['test']['chrf'] for r in runs])} |"
        )
    return "\n".join(lines) + "\n"


def validation_curve(run_dir: Path) -> tuple[list[float], list[float]]:
    """(training minutes, validation BLEU) of a run's validations, from its `metrics.jsonl`.

    The log records steps, not times: a step's minute is `step * training minutes / last step`, which
    assumes a constant step rate (validations, a few seconds each, are spread over the run)."""
    rows = read_metrics(Path(run_dir) / "metrics.jsonl")
    minutes, _ = training_minutes(run_dir)
    last_step = max(row["step"] for row in rows)
    points = [(row["step"] * minutes / last_step, row["eval_bleu"]) for row in rows if "eval_bleu" in row]
    points = sorted(dict(points).items())  # the final validation may be logged twice at the same step
    return [p[0] for p in points], [p[1] for p in points]


def plot_validation_bleu(rows: Sequence[str], results_dir: Path = RESULTS_DIR, png: Path = FIGURE) -> Path:
    """Validation BLEU (the runs' own validations: greedy, `max_eval_samples` pairs) against training
    minutes for those of `rows` that have trained runs (others are skipped with a warning), one line
    per seed, one colour per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = load_results(results_dir)
    missing = [name for name in rows if name not in results or results[name][0].get("scored_from")]
    if missing:
        logger.warning("not plotted: no trained runs of %s in %s", missing, results_dir)
    rows = [name for name in rows if name not in missing]
    if not rows:
        raise ValueError(f"nothing to plot: no trained runs of the rows asked for in {results_dir}")
    fig, ax = plt.subplots(figsize=(8, 5))
    for colour, name in enumerate(rows):
        for index, result in enumerate(results[name]):
            x, y = validation_curve(Path(result["run_dir"]))
            count = len(results[name])
            label = f"{name} ({count} seed{'s' * (count != 1)})" if index == 0 else None
            ax.plot(x, y, "o-", color=f"C{colour}", alpha=0.8, markersize=3, label=label)
    ax.set_xlabel("training minutes")
    ax.set_ylabel("validation BLEU (greedy, sacreBLEU)")
    ax.set_title("Ablations of the quick recipe, Multi30k De→En")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def main(argv: Sequence[str] | None = None) -> str | list[dict[str, Any]] | Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=",".join(BY_NAME), help=f"comma-separated rows of: {', '.join(BY_NAME)}")
    parser.add_argument("--seeds", default="1", help="comma-separated seeds, e.g. 1,2,3")
    parser.add_argument("--minutes", type=float, default=None, help="time budget (default: the quick recipe's)")
    parser.add_argument("--runs-dir", default="runs/ablations")
    parser.add_argument("--results-dir", default=str(RESULTS_DIR))
    parser.add_argument("--table", action="store_true", help="print the markdown table of the results; train nothing")
    parser.add_argument(
        "--plot", metavar="ROWS", default=None, help="plot validation BLEU of these rows; train nothing"
    )
    parser.add_argument("--figure", default=str(FIGURE))
    parser.add_argument("overrides", nargs="*", help="key=value TrainConfig overrides for every row")
    args = parser.parse_args(argv)
    if args.table:
        table = ablation_table(Path(args.results_dir))
        print(table, end="")
        return table
    if args.plot:
        png = plot_validation_bleu(_names(args.plot), Path(args.results_dir), Path(args.figure))
        print(f"written: {png}")
        return png
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    results = run_ablations(
        _names(args.rows),
        [int(seed) for seed in _names(args.seeds)],
        minutes=args.minutes,
        runs_dir=Path(args.runs_dir),
        results_dir=Path(args.results_dir),
        overrides=args.overrides,
    )
    print(ablation_table(Path(args.results_dir)), end="")
    return results


if __name__ == "__main__":
    main()
