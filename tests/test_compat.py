"""`compat.py`: the tested transformers range, its checks, and the guards around the internals the
model relies on. They must fail loudly, never silently, when transformers changes under them."""

import json
import re
import warnings

import pytest
import tomllib
import torch
from packaging.specifiers import SpecifierSet
from transformers import GenerationMixin

import hf_vanilla_transformer as hvt
from hf_vanilla_transformer import compat
from tests.helpers import REPO_ROOT, random_batch, tiny_model
from tests.hub_helpers import run_isolated


def test_pyproject_declares_the_tested_range():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    (spec,) = [dep for dep in project["project"]["dependencies"] if re.match(r"transformers\b", dep)]
    assert SpecifierSet(spec.removeprefix("transformers")) == compat.TESTED_TRANSFORMERS


def test_the_installed_release_is_a_tested_one():
    """CI installs the newest release in range and the floor; anything else here means a stale environment."""
    assert compat.INSTALLED_TRANSFORMERS in compat.TESTED_TRANSFORMERS


def _first_release_above_the_range() -> str:
    (cap,) = [spec.version for spec in compat.TESTED_TRANSFORMERS if spec.operator == "<"]
    return f"{cap}.0" if cap.count(".") == 1 else cap


@pytest.mark.parametrize("version", ["5.22.2", _first_release_above_the_range(), "6.0.0"])
def test_an_untested_release_warns_naming_it_and_the_range(version):
    with pytest.warns(compat.TransformersVersionWarning) as caught:
        compat.check_transformers_version(version)
    message = str(caught[0].message)
    assert f"transformers {version} is installed" in message and str(compat.TESTED_TRANSFORMERS) in message


def test_a_tested_release_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compat.check_transformers_version(compat.INSTALLED_TRANSFORMERS)


def test_a_release_known_to_break_raises():
    with pytest.raises(ImportError, match=r"does not work with transformers 4\.57\.1"):
        compat.check_transformers_version("4.57.1")


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_a_loaded_model_computes_what_the_saved_one_did(tmp_path, activation):
    """From transformers 5.25, `from_pretrained` hands the model to the `kernels` library (`kernelize`), and
    `train()` / `eval()` do again on a mode change, unless USE_HUB_KERNELS=NO. Nothing of this model may be
    replaced by a kernel with other numerics on a CPU: the GELU option is transformers' `GELUActivation`, which
    `kernels` maps to a Hub kernel on GPUs. Same logits after loading, in both modes."""
    model = tiny_model(activation_function=activation)
    model.save_pretrained(tmp_path)
    loaded = hvt.VanillaTransformerForConditionalGeneration.from_pretrained(tmp_path).eval()
    batch = random_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, rtol=0, atol=0)
        model.train(), loaded.train()  # dropout off in tiny_config: train mode computes the same, kernelized again
        torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits, rtol=0, atol=0)
        loaded.eval()
        torch.testing.assert_close(loaded(**batch).logits, model.eval()(**batch).logits, rtol=0, atol=0)


def test_the_cache_is_returned_under_the_installed_name():
    out = tiny_model()(**random_batch(), use_cache=True)
    assert isinstance(getattr(out, compat.CACHE_NAME), hvt.modeling_vanilla_transformer.EncoderDecoderCache)


def test_changed_beam_search_internals_fail_loudly(monkeypatch):
    """The GNMT penalty overrides two private GenerationMixin methods: if their keywords change, beam search
    with the paper's penalty in transformers' loop must refuse to run rather than rank beams silently wrong.
    The package's own loop (`beam_search.py`), which `generate()` takes for plain beam search, does not use them."""

    def changed(self, *, scores, length, **kwargs):  # the keywords the override reads are gone
        raise AssertionError("not reached")

    monkeypatch.setattr(GenerationMixin, "_update_finished_beams", changed)
    model = tiny_model()
    batch = random_batch()
    batch.pop("decoder_input_ids")
    model.generate(**batch, num_beams=4, max_new_tokens=3)  # the package's own loop
    model.use_own_decoding_loops = False
    with pytest.raises(RuntimeError, match=r"GenerationMixin\._update_finished_beams no longer takes"):
        model.generate(**batch, num_beams=4, max_new_tokens=3)
    model.generate(**batch, num_beams=1, max_new_tokens=3)  # greedy does not use them
    monkeypatch.undo()
    compat.check_beam_search_hooks()
    monkeypatch.delattr(GenerationMixin, "_check_early_stop_heuristic")
    with pytest.raises(RuntimeError, match="_check_early_stop_heuristic no longer exists"):
        compat.check_beam_search_hooks()


def test_changed_strict_decorator_fails_loudly():
    class NotStrict:
        def validate(self):
            pass

    with pytest.raises(ImportError, match="internals changed"):
        compat.unwrap_strict_validation_errors(NotStrict)


def test_remote_code_warns_on_an_untested_release(tmp_path):
    """The check ships with the model: loading it with trust_remote_code under another release warns."""
    torch.manual_seed(0)
    tiny_model().save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "compat.py").is_file()
    code = """
        import sys, warnings
        import transformers
        transformers.__version__ = "5.99.0"  # pretend a newer release is installed
        from transformers import AutoModelForSeq2SeqLM
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = AutoModelForSeq2SeqLM.from_pretrained(sys.argv[1], trust_remote_code=True)
        print("WARNINGS " + " | ".join(str(w.message) for w in caught))
    """
    stdout = run_isolated(code, tmp_path / "fresh", str(tmp_path / "model"), timeout=300)
    warned = stdout.split("WARNINGS ", 1)[1]
    assert "tested with transformers" in warned and "transformers 5.99.0 is installed" in warned


def test_saved_folder_ships_the_compat_module(tmp_path):
    tiny_model().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["head_dim"] == 8  # resolved: transformers' generic code reads it as an int
    assert {"compat.py", "generation.py"} <= {p.name for p in tmp_path.iterdir()}
