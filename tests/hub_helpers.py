"""Helpers for the tests that share the project's model through the local Hub (not fixtures).

`require_model()` skips a test only while the model package cannot be imported yet;
`run_isolated()` runs Python code in a fresh process that has an empty Hugging Face cache and in
which `hf_vanilla_transformer` cannot be imported, to prove that a repo works on its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

# A few dozen short German/English sentence pairs: enough to train a tiny BPE vocabulary.
PARALLEL = [
    ("Ein Mann fährt Fahrrad.", "A man rides a bike."),
    ("Eine Frau liest ein Buch.", "A woman reads a book."),
    ("Zwei Hunde spielen im Schnee.", "Two dogs play in the snow."),
    ("Ein Kind isst einen Apfel.", "A child eats an apple."),
    ("Der Mann trinkt Kaffee.", "The man drinks coffee."),
    ("Die Frau singt ein Lied.", "The woman sings a song."),
    ("Ein Hund läuft über die Wiese.", "A dog runs across the meadow."),
    ("Zwei Männer spielen Fußball.", "Two men play football."),
    ("Ein Mädchen malt ein Bild.", "A girl paints a picture."),
    ("Ein Junge springt ins Wasser.", "A boy jumps into the water."),
    ("Die Kinder lachen laut.", "The children laugh loudly."),
    ("Eine Katze schläft auf dem Sofa.", "A cat sleeps on the sofa."),
    ("Der Koch schneidet Gemüse.", "The cook cuts vegetables."),
    ("Ein Mann steht auf der Straße.", "A man stands on the street."),
    ("Eine Frau fährt ein rotes Auto.", "A woman drives a red car."),
    ("Ein alter Mann sitzt auf einer Bank.", "An old man sits on a bench."),
    ("Zwei Frauen gehen am Strand spazieren.", "Two women walk on the beach."),
    ("Ein Hund trägt einen Stock.", "A dog carries a stick."),
    ("Die Sonne scheint über der Stadt.", "The sun shines over the city."),
    ("Ein Musiker spielt Gitarre.", "A musician plays the guitar."),
    ("Ein Kind klettert auf einen Baum.", "A child climbs a tree."),
    ("Eine Gruppe von Menschen tanzt.", "A group of people dances."),
    ("Der Junge trägt einen blauen Hut.", "The boy wears a blue hat."),
    ("Ein Mann arbeitet im Garten.", "A man works in the garden."),
    ("Die Frau kauft Brot.", "The woman buys bread."),
    ("Zwei Kinder bauen eine Sandburg.", "Two children build a sandcastle."),
    ("Ein Radfahrer fährt den Berg hinauf.", "A cyclist rides up the hill."),
    ("Ein Hund schwimmt im See.", "A dog swims in the lake."),
    ("Eine Frau wartet auf den Bus.", "A woman waits for the bus."),
    ("Der Mann liest eine Zeitung.", "The man reads a newspaper."),
]

# Imported at the start of every isolated process: makes the package impossible to import even if
# it is pip-installed (editable) in this environment, and proves it.
_ISOLATION_PRELUDE = """
import importlib.abc
import sys


class _BlockProjectPackage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hf_vanilla_transformer" or name.startswith("hf_vanilla_transformer."):
            raise ModuleNotFoundError(f"{name} is blocked in this isolated test process")
        return None


sys.meta_path.insert(0, _BlockProjectPackage())
try:
    import hf_vanilla_transformer  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("hf_vanilla_transformer is importable in the isolated process")
"""


def require_model() -> ModuleType:
    """The `hf_vanilla_transformer` package; skips the test only while its model class is missing."""
    try:
        import hf_vanilla_transformer as hvt

        hvt.VanillaTransformerForConditionalGeneration  # noqa: B018 - the attribute must exist
    except (ImportError, AttributeError) as exc:
        pytest.skip(f"hf_vanilla_transformer.VanillaTransformerForConditionalGeneration not importable yet: {exc}")
    return hvt


def write_corpus(folder: Path) -> tuple[Path, Path]:
    """German and English sides of `PARALLEL` as two text files."""
    folder.mkdir(parents=True, exist_ok=True)
    de, en = folder / "train.de", folder / "train.en"
    de.write_text("\n".join(src for src, _ in PARALLEL) + "\n", encoding="utf-8")
    en.write_text("\n".join(tgt for _, tgt in PARALLEL) + "\n", encoding="utf-8")
    return de, en


def tiny_translation_model(hvt: ModuleType, vocab_size: int, seed: int) -> Any:
    """The brief's tiny model (1+1 layers, d_model 32), initialised from `seed`, in eval mode."""
    import torch

    from tests.helpers import ONE_LAYER_SIZES

    config = hvt.VanillaTransformerConfig.small(vocab_size=vocab_size, **ONE_LAYER_SIZES)
    torch.manual_seed(seed)
    return hvt.VanillaTransformerForConditionalGeneration(config).eval()


def run_isolated(code: str, workdir: Path, *args: str, timeout: float = 120) -> str:
    """Run `code` in a fresh `python -I` with an empty HF_HOME and cwd `workdir`; return its stdout.

    `-I` keeps the repo root, PYTHONPATH and user site-packages off `sys.path`; the prelude also
    blocks `hf_vanilla_transformer` in case it is installed. The Hub endpoint and token are
    inherited from this process's environment (set by conftest.py).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    hf_home = workdir / "hf-home"
    hf_home.mkdir()
    script = workdir / "isolated_script.py"
    script.write_text(_ISOLATION_PRELUDE + "\n" + textwrap.dedent(code), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTHON")}
    env["HF_HOME"] = str(hf_home)
    result = subprocess.run(
        [sys.executable, "-I", str(script), *args],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"isolated process failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-4000:]}"
        )
    return result.stdout


def result_of(stdout: str) -> Any:
    """The JSON document an isolated script printed on a line starting with `RESULT `."""
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if len(lines) != 1:
        raise AssertionError(f"expected one RESULT line in the isolated process output:\n{stdout}")
    return json.loads(lines[0][len("RESULT ") :])
