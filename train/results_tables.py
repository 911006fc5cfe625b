"""Rebuild the README's results tables from the committed results files.

    python -m train.results_tables            # make tables: rewrite the tables in README.md
    python -m train.results_tables --check    # exit 1 if a table in README.md differs from its files
    python -m train.results_tables --print    # print every table, README untouched

A generated table sits between two marker lines in the README, which name it:

    <!-- table:recipe-vs-baseline -->
    | ... generated: do not edit by hand ... |
    <!-- /table:recipe-vs-baseline -->

Everything between the markers is replaced; everything else in the README is left as it is. The
tables (`TABLES`) and the files each is built from:

- `trained-models`: `model_cards/*.results.json` (`make cards` copies each recipe run's `summary.json`
  there): test scores with the run's training time, steps, precision, machine and seed;
- `recipe-vs-baseline`: `results/recipe-vs-baseline.json` (`python -m train.compare_baseline`), and
  `recipe-vs-baseline-avx2`: `results/recipe-vs-baseline-avx2.json`, the same comparison on a CPU without
  native bf16 (`--output` names the file);
- `ablations`: `results/ablations/*.json` (`python -m train.ablations`), mean ± sd over seeds;
- `side-by-side`: `results/side-by-side.json` (`python -m train.compare_models`): the Transformer and the
  recurrent models on the same data, tokenizer and budget;
- `recipe-seeds`: `results/recipe-seeds.json` (`python -m train.seed_spread`): `make recipe` with three seeds
  on one machine, each run and the spread;
- `en-de-long-runs`: the runs `results/en-de-long-runs.json` lists (a results file of `python -m train.recipe`
  and an `evaluate_model` file of the validation split, decoded alike, for each);
- `speed`: `SPEED_RESULTS` (`python benchmarks/bench_model.py --json ...`, `make benchmark`): our model against
  `MarianMTModel` of the same architecture, training and decoding, both presets, as ratios from one run.

A table whose files do not exist yet says which command makes them.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from train.ablations import ablation_table
from train.compare_models import markdown_table
from train.data import is_lowercased_tokenized, published_split_name

REPO_ROOT = Path(__file__).resolve().parents[1]

MARKED = re.compile(
    r"^<!-- table:(?P<name>[a-z0-9-]+) -->\n(?P<body>.*?)^<!-- /table:(?P=name) -->$", re.MULTILINE | re.DOTALL
)
BEGIN = re.compile(r"^<!-- table:(?P<name>[^ ]*) -->$", re.MULTILINE)
END = re.compile(r"^<!-- /table:(?P<name>[^ ]*) -->$", re.MULTILINE)


class StaleTableError(ValueError):
    """The README's markers are malformed or name a table that does not exist."""


def begin_marker(name: str) -> str:
    return f"<!-- table:{name} -->"


def end_marker(name: str) -> str:
    return f"<!-- /table:{name} -->"


# ---------------------------------------------------------------------------- the tables
def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _hardware(machine: Mapping[str, Any] | None) -> str:
    if not machine:
        return "not recorded"
    flags = ", ".join(machine.get("cpu_flags", []))
    threads = machine.get("torch_threads", "?")
    return f"{machine.get('cpu', '?')} ({flags}), {threads} thread{'s' * (threads != 1)}"


def _relative(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def trained_models_table(root: Path) -> str:
    """One row per `model_cards/<name>.results.json`: the card's test scores and how the model was trained."""
    files = sorted((root / "model_cards").glob("*.results.json"))
    if not files:
        return "No trained models yet: run the recipe, then `make cards`.\n"
    lines = [
        "| model card | data, direction | test set | BLEU | BLEU lc-tok | chrF | until trained | total time | "
        "precision, hardware | seed | results |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in files:
        summary = _read(path)
        test = summary.get("test") or {}
        name = path.name.removesuffix(".results.json")
        card = path.with_name(f"{name}.md")
        card_cell = f"[{name}]({_relative(card, root)})" if card.is_file() else name
        cased = not is_lowercased_tokenized(test.get("dataset", ""))  # else its output is lowercased, tokenised text
        bleu = f"{test['bleu']:.1f}" if "bleu" in test and cased else "–"
        chrf = f"{test['chrf']:.1f}" if "chrf" in test and cased else "–"
        lowercased = f"{test['bleu_tok_lc']:.1f}" if "bleu_tok_lc" in test else "–"  # Multi30k papers' convention
        split = published_split_name(test.get("dataset", ""), test["split"]) if "split" in test else "–"
        epochs = f", {summary['epochs']:.1f} epochs" if summary.get("epochs") is not None else ""
        lines.append(
            f"| {card_cell} | {test.get('dataset', '?')}, {test.get('language_pair', '?')} | {split} | {bleu} | "
            f"{lowercased} | {chrf} | {summary['minutes_until_trained']:.1f} min: {summary['steps']:,} steps{epochs} | "
            f"{summary.get('total_minutes', float('nan')):.1f} min | {summary.get('precision', '?')}, "
            f"{_hardware(summary.get('machine'))} | {summary.get('seed', '?')} | `{_relative(path, root)}` |"
        )
    return "\n".join(lines) + "\n"


def recipe_vs_baseline_table(root: Path, file_name: str = "recipe-vs-baseline.json") -> str:
    """The two runs of `results/<file_name>` (`python -m train.compare_baseline`) and their difference."""
    path = root / "results" / file_name
    if not path.is_file():
        if file_name == "recipe-vs-baseline.json":
            return "Not measured yet: run `make compare` (`python -m train.compare_baseline`).\n"
        return f"Not measured yet: run `python -m train.compare_baseline --output results/{file_name}`.\n"
    comparison = _read(path)
    lines = [
        "| run | command | training | BLEU | chrF | precision | decoding |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, entry in (("recipe", comparison["recipe"]), ("plain Hugging Face", comparison["baseline"])):
        epochs = f", {entry['epochs']:.1f} epochs" if entry.get("epochs") is not None else ""
        lines.append(
            f"| {label} | `{entry['command']}` | {entry['training_minutes']:.1f} min: {entry['steps']:,} steps"
            f"{epochs} | "
            f"{entry['bleu']:.1f} | {entry['chrf']:.1f} | {entry.get('precision', '?')} | {entry['decoding']} |"
        )
    lines.append(
        f"| **difference** | | | **{comparison['bleu_difference']:+.1f}** | {comparison['chrf_difference']:+.1f} | | |"
    )
    same = "" if comparison.get("same_machine", True) else " The two runs were NOT measured on the same machine."
    lines.append("")
    lines.append(
        f"{comparison['dataset']} {comparison['language_pair']}, {comparison['test_split']} split, seed "
        f"{comparison['seed']}, one after the other on {_hardware(comparison['machine'])} (torch "
        f"{comparison['machine']['torch']}, transformers {comparison['machine']['transformers']}). BLEU "
        f"`{comparison['recipe']['bleu_signature']}`, chrF `{comparison['recipe']['chrf_signature']}`; "
        f"`{_relative(path, root)}`.{same}"
    )
    return "\n".join(lines) + "\n"


def ablations_table(root: Path) -> str:
    """`train.ablations.ablation_table` of `results/ablations/`."""
    return ablation_table(root / "results" / "ablations")


def side_by_side_table(root: Path) -> str:
    """`train.compare_models.markdown_table` of `results/side-by-side.json`: the Transformer and the
    recurrent models trained with the same data, tokenizer and budget."""
    path = root / "results" / "side-by-side.json"
    if not path.is_file():
        return (
            "Not measured yet: train the three models, then run `python -m train.compare_models ... --json "
            "results/side-by-side.json` (see `train/compare_models.py`).\n"
        )
    record = _read(path)
    return markdown_table(record["rows"]) + f"\n`{record['command']}`; `results/side-by-side.json`.\n"


def recipe_seeds_table(root: Path) -> str:
    """The runs of `results/recipe-seeds.json` (`train.seed_spread`), one per seed, and each score's spread."""
    path = root / "results" / "recipe-seeds.json"
    if not path.is_file():
        return "Not measured yet: run the recipe with several seeds, then `python -m train.seed_spread` (see there).\n"
    record = _read(path)
    runs, spread = record["runs"], record["spread"]
    lines = [
        "| seed | training | best validation BLEU during training | length penalty chosen | test BLEU | test chrF |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run['seed']} | {run['minutes_until_trained']:.1f} min: {run['steps']:,} steps, {run['epochs']:.1f} "
            f"epochs | {run['validation_bleu']:.1f} | {run['length_penalty']} | {run['bleu']:.1f} | {run['chrf']:.1f} |"
        )

    def cell(score: str) -> str:
        values = spread[score]
        return f"{values['mean']:.1f} ± {values['sd']:.1f} ({values['min']:.1f}-{values['max']:.1f})"

    lines.append(f"| **mean ± sd (range)** | | {cell('validation_bleu')} | | {cell('bleu')} | {cell('chrf')} |")
    first = runs[0]
    lines.append("")
    lines.append(
        f"{first['dataset']} {published_split_name(first['dataset'], first['split'])}, beam {first['num_beams']}; "
        f"{first['precision']} on {_hardware(first['machine'])}. "
        f"BLEU `{first['bleu_signature']}`, chrF `{first['chrf_signature']}`; `{record['command']}`; "
        f"`{_relative(path, root)}`."
    )
    return "\n".join(lines) + "\n"


def long_runs_table(root: Path) -> str:
    """One row per run listed in `results/en-de-long-runs.json`: its steps, the decoding chosen on validation, and the
    lowercased-tokenised BLEU of that decoding on validation (the run's `evaluate_model` file) and on the test
    split (the run's results file): the metric of the published Multi30k systems, comparable between runs on raw
    and on lowercased-tokenised text (their own `13a` BLEU and chrF are not)."""
    path = root / "results" / "en-de-long-runs.json"
    if not path.is_file():
        return "Not measured yet: `results/en-de-long-runs.json` lists the long runs and their files.\n"
    index = _read(path)
    lines = [
        "| run | steps (epochs) | threads | decoding chosen on validation | validation, lc-tok | test, lc-tok | "
        "results |",
        "|---|---|---|---|---|---|---|",
    ]
    signatures = set()
    for run in index["runs"]:
        results, validation = _read(root / run["results"]), _read(root / run["validation"])
        test = results["test"]
        if (test["num_beams"], test["length_penalty"]) != (validation["num_beams"], validation["length_penalty"]):
            raise ValueError(f"{run['validation']} was not decoded as {run['results']}'s test split")
        signatures.add(test["bleu_tok_lc_signature"])
        best = "**" if run.get("chosen") else ""
        lines.append(
            f"| {run['run']} | {results['steps']:,} ({results['epochs']:.0f}) | "
            f"{results['machine']['torch_threads']} | beam {test['num_beams']}, α {test['length_penalty']} | "
            f"{best}{validation['bleu_tok_lc']:.2f}{best} | {best}{test['bleu_tok_lc']:.2f}{best} | "
            f"`{run['results']}`, `{run['validation']}` |"
        )
    lines.append("")
    lines.append(
        f"{index['description']} lc-tok: lowercased, Moses-tokenised BLEU, "
        + ", ".join(f"`{signature}`" for signature in sorted(signatures))
        + f"; `{_relative(path, root)}`."
    )
    seeds = _chosen_setting_seeds(root, index["runs"])
    if seeds:
        lines.append("")
        lines.append(seeds)
    return "\n".join(lines) + "\n"


def _chosen_setting_seeds(root: Path, runs: Sequence[Mapping[str, Any]]) -> str:
    """The spread (`train.seed_spread.spread`) of the lc-tok scores over the chosen run and the runs marked
    `seed_of_chosen` (the chosen setting with other seeds), or "" when there is only one."""
    from train.seed_spread import spread

    chosen = [run for run in runs if run.get("chosen") or run.get("seed_of_chosen")]
    if len(chosen) < 2:
        return ""
    seeds = [_read(root / run["results"]).get("seed") for run in chosen]
    validation = spread([_read(root / run["validation"])["bleu_tok_lc"] for run in chosen])
    test = spread([_read(root / run["results"])["test"]["bleu_tok_lc"] for run in chosen])

    def text(values: Mapping[str, float]) -> str:
        return f"{values['mean']:.2f} ± {values['sd']:.2f} (from {values['min']:.2f} to {values['max']:.2f})"

    return (
        f"The chosen setting over its {len(chosen)} seeds ({', '.join(map(str, seeds))}; mean ± sample standard "
        f"deviation): validation lc-tok {text(validation)}, test lc-tok {text(test)}."
    )


SPEED_RESULTS = "benchmarks/results/model-vs-marian-session18.json"
"""The run of `benchmarks/bench_model.py` (both presets) that the README's speed table shows: the latest one."""


def speed_table(root: Path) -> str:
    """`SPEED_RESULTS` as the README's speed table: for each preset, our model's training step and decoding against
    Marian's as ratios (Marian's time over ours), MFU and peak memory."""
    path = root / SPEED_RESULTS
    if not path.is_file():
        return f"Not measured yet: `python benchmarks/bench_model.py --json {SPEED_RESULTS}`.\n"
    record = _read(path)
    rows: dict[tuple[str, str], dict[str, Any]] = {(r["measurement"], r["variant"]): r for r in record["rows"]}
    presets = [preset for preset in ("small", "base") if (f"training step, {preset}", "ours fp32") in rows]

    def row(measurement: str, preset: str, variant: str) -> dict[str, Any] | None:
        found = [r for (m, v), r in rows.items() if v == variant and m.startswith(f"{measurement}, {preset}")]
        return found[0] if found else None

    def ratio(measurement: str, variant: str, bold: bool = False) -> Callable[[str], str]:
        def cell(preset: str) -> str:
            found = row(measurement, preset, variant)
            if found is None:
                return "–"
            value = found.get("ratio_vs_marian_fp32", found.get("ratio_vs_marian"))
            return f"**{value:.2f}x**" if bold else f"{value:.2f}x"

        return cell

    def pair(first: Callable[[str], str], second: Callable[[str], str]) -> Callable[[str], str]:
        return lambda preset: f"{first(preset)} / {second(preset)}"

    def mfu(variant: str) -> Callable[[str], str]:
        return lambda preset: f"{row('training step', preset, variant)['mfu']:.2f}"

    def memory(preset: str) -> str:
        variants = ("ours fp32", "ours bf16", "marian fp32")
        found = [row("peak memory of a training step", preset, variant) for variant in variants]
        return " / ".join(f"{r['peak_rss_growth_mib']:,.0f}" if r else "–" for r in found)

    lines = [
        "| measurement | " + " | ".join(f"{preset} ({PRESET_SHAPES[preset]})" for preset in presets) + " |",
        "|---|" + "---|" * len(presets),
    ]
    for label, cell in [
        ("training step, ours fp32 / Marian fp32", ratio("training step", "ours fp32")),
        (
            "training step, ours fp32 computing the padding too (`skip_padding=False`) / Marian fp32",
            ratio("training step", "ours fp32, padding computed"),
        ),
        (
            "training step, ours bf16 autocast (as `precision: auto` trains on a CPU with native bf16) / Marian fp32",
            ratio("training step", "ours bf16 autocast", bold=True),
        ),
        (
            "MFU, ours fp32 / bf16 (the FLOPs each computes, against the matmul peak of that dtype measured in "
            "the run)",
            pair(mfu("ours fp32"), mfu("ours bf16 autocast")),
        ),
        ("peak memory of a training step, ours fp32 / bf16 / Marian fp32 (MiB above the model)", memory),
        ("greedy decoding, ours / Marian", ratio("greedy decoding", "ours")),
        ("beam-4 decoding, ours / Marian", ratio("beam-4 decoding", "ours")),
        (
            "greedy / beam-4 decoding, ours with bf16 weights (`--dtype bfloat16`) / Marian fp32",
            pair(ratio("greedy decoding", "ours, bf16 weights"), ratio("beam-4 decoding", "ours, bf16 weights")),
        ),
    ]:
        lines.append(f"| {label} | " + " | ".join(cell(preset) for preset in presets) + " |")
    machine = record["machine"]
    lines.append("")
    lines.append(
        f"{machine['cpu']} ({', '.join(machine.get('flags', []))}), {machine['threads']} threads, torch "
        f"{machine.get('torch', '?')}, transformers {machine.get('transformers', '?')}, decoding timed in "
        f"{machine.get('decoding_clock', '?')}; `{record['command']}`; `{SPEED_RESULTS}`."
    )
    return "\n".join(lines) + "\n"


PRESET_SHAPES = {"small": "d 256, 3+3", "base": "d 512, 6+6"}
"""The shape of each preset the speed table names (`VanillaTransformerConfig.small()` / `.base()`)."""


TABLES: dict[str, Callable[[Path], str]] = {
    "trained-models": trained_models_table,
    "recipe-vs-baseline": recipe_vs_baseline_table,
    "recipe-vs-baseline-avx2": functools.partial(recipe_vs_baseline_table, file_name="recipe-vs-baseline-avx2.json"),
    "ablations": ablations_table,
    "side-by-side": side_by_side_table,
    "recipe-seeds": recipe_seeds_table,
    "en-de-long-runs": long_runs_table,
    "speed": speed_table,
}
"""Every table the README may hold, by marker name."""


# ---------------------------------------------------------------------------- the README
def rewrite(text: str, root: Path = REPO_ROOT) -> str:
    """`text` with the body of every marked table regenerated from the files under `root`."""
    begins = [m["name"] for m in BEGIN.finditer(text)]
    ends = [m["name"] for m in END.finditer(text)]
    unknown = sorted(set(begins + ends) - set(TABLES))
    if unknown:
        raise StaleTableError(f"unknown table marker(s) {unknown}; tables: {sorted(TABLES)}")
    marked = [m["name"] for m in MARKED.finditer(text)]
    if sorted(marked) != sorted(begins) or sorted(marked) != sorted(ends):
        raise StaleTableError(
            f"unpaired table markers: begin {begins}, end {ends}; each table needs "
            f"'{begin_marker('NAME')}' and, on a later line, '{end_marker('NAME')}'"
        )
    return MARKED.sub(lambda m: f"{begin_marker(m['name'])}\n{TABLES[m['name']](root)}{end_marker(m['name'])}", text)


def stale_tables(text: str, root: Path = REPO_ROOT) -> list[str]:
    """The names of the marked tables in `text` whose body differs from what their files give."""
    fresh = {m["name"]: m["body"] for m in MARKED.finditer(rewrite(text, root))}
    return [m["name"] for m in MARKED.finditer(text) if m["body"] != fresh[m["name"]]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", default=str(REPO_ROOT / "README.md"))
    parser.add_argument("--root", default=str(REPO_ROOT), help="where model_cards/ and results/ are")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if a table is stale; change nothing")
    mode.add_argument("--print", action="store_true", help="print every table; change nothing")
    args = parser.parse_args(argv)
    root, readme = Path(args.root), Path(args.readme)
    if args.print:
        for name, build in TABLES.items():
            print(f"{begin_marker(name)}\n{build(root)}{end_marker(name)}\n")
        return 0
    text = readme.read_text(encoding="utf-8")
    if args.check:
        stale = stale_tables(text, root)
        if stale:
            print(f"{readme}: stale table(s) {stale}; run `python -m train.results_tables`", file=sys.stderr)
            return 1
        print(f"{readme}: {len(MARKED.findall(text))} generated table(s), all up to date")
        return 0
    updated = rewrite(text, root)
    if updated != text:
        readme.write_text(updated, encoding="utf-8")
    print(f"{readme}: {len(MARKED.findall(text))} table(s) {'rewritten' if updated != text else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
