"""train/tune_decoding.py: the beam size and length penalty chosen on validation (§6.1), as a command, after
training (`tune_num_beams` / `tune_length_penalties`) and for a finished run (`train.recipe --rescore`)."""

import json

import pytest

from tests.helpers import MISSING_DATA, MULTI30K
from tests.train_helpers import tiny_settings, write_slice
from train import tune_decoding as tuning_module
from train.config import TrainConfig
from train.data import load_split
from train.evaluate import score
from train.model_folder import load_model
from train.train import rescore, train
from train.translate import translate
from train.tune_decoding import apply_decoding, decoding_grid, tune_decoding

needs_data = pytest.mark.skipif(not MULTI30K.is_dir(), reason=MISSING_DATA)


# ------------------------------------------------------------------ the grid and the choice
def test_grid_pairs_every_beam_with_every_alpha_and_greedy_once():
    assert decoding_grid([1, 4, 4, 5], [0.6, 1.0, 0.6]) == [(1, None), (4, 0.6), (4, 1.0), (5, 0.6), (5, 1.0)]


@pytest.mark.parametrize(
    ("beams", "alphas", "message"),
    [
        ([], [0.6], "at least one"),
        ([4], [], "at least one"),
        ([0], [0.6], "positive integers"),
        ([True], [0.6], "positive integers"),
        ([4], ["high"], "numbers"),
    ],
)
def test_grid_rejects_bad_values(beams, alphas, message):
    with pytest.raises(ValueError, match=message):
        decoding_grid(beams, alphas)


def fake_evaluation(bleu_by_setting):
    """An `evaluate_translations` that scores each (beam, alpha) with the given BLEU, recording the calls."""
    calls = []

    def evaluate(model, tokenizer, data, *, output_dir, meta, tgt_lang, num_beams, length_penalty, **kwargs):
        calls.append((num_beams, length_penalty, meta["split"]))
        bleu = bleu_by_setting[(num_beams, length_penalty)]
        return {"bleu": bleu, "bleu_signature": "sig", "chrf": 50.0, "bleu_brevity_penalty": 1.0}, []

    return evaluate, calls


@pytest.mark.parametrize(
    ("bleu_by_setting", "best"),
    [
        # the highest BLEU wins
        ({(1, None): 30.0, (4, 0.6): 31.0, (4, 1.2): 32.5, (8, 0.6): 31.9, (8, 1.2): 32.1}, (4, 1.2)),
        # a tie at the reported precision: the smaller beam
        ({(1, None): 30.0, (4, 0.6): 32.001, (4, 1.2): 31.0, (8, 0.6): 32.004, (8, 1.2): 31.0}, (4, 0.6)),
        # a tie within a beam: the alpha closer to the paper's 0.6
        ({(1, None): 30.0, (4, 0.6): 31.0, (4, 1.2): 32.0, (8, 0.6): 31.0, (8, 1.2): 31.0}, (4, 1.2)),
        ({(1, None): 33.0, (4, 0.6): 31.0, (4, 1.2): 32.0, (8, 0.6): 31.0, (8, 1.2): 31.0}, (1, None)),
    ],
)
def test_the_best_setting_on_validation_is_chosen(monkeypatch, tmp_path, bleu_by_setting, best):
    import train.evaluate_model

    evaluate, calls = fake_evaluation(bleu_by_setting)
    monkeypatch.setattr(train.evaluate_model, "evaluate_translations", evaluate)
    result = tune_decoding(
        None,
        None,
        [],
        split="val",
        tgt_lang="en",
        num_beams=[1, 4, 8],
        length_penalties=[0.6, 1.2],
        output_dir=tmp_path,
    )
    assert sorted(calls) == sorted((k, a, "val") for k, a in bleu_by_setting)  # each setting once, on validation
    assert (result["best"]["num_beams"], result["best"]["length_penalty"]) == best
    assert [row["bleu"] for row in result["grid"]] == [
        bleu_by_setting[k, a] for k, a in decoding_grid([1, 4, 8], [0.6, 1.2])
    ]


def test_the_test_split_is_never_tuned_on(tmp_path):
    with pytest.raises(ValueError, match="never tuned on"):
        tune_decoding(
            None, None, [], split="test2016", tgt_lang="en", num_beams=[4], length_penalties=[0.6], output_dir=tmp_path
        )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["tune_num_beams=[4, 5]", "test_num_beams=4"], "not both"),
        (["tune_length_penalties=[0.6, 1.0]", "length_penalty=0.6"], "not both"),
        (["tune_num_beams=[4, 0]"], "beam sizes >= 1"),
        (["tune_num_beams=[4.5]"], "tune_num_beams"),
        (["tune_length_penalties=[]"], "non-empty"),
        (["tune_num_beams=[4]", "eval_split=test"], "must not be a test split"),
    ],
)
def test_tuning_settings_are_checked_before_a_run(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.load(None, overrides)


# ------------------------------------------------------------------ on a trained model
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_slice(tmp_path_factory.mktemp("m30k"))


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
    """A tiny run trained without decoding tuning (its test: beam 2, the generation config's alpha)."""
    out = tmp_path_factory.mktemp("run") / "run"
    train(TrainConfig.from_dict(tiny_settings(data, out, max_steps=8, eval_steps=8)))
    return out


def copy_run(run, tmp_path):
    """A copy of the run folder `run`, and its saved settings with `output_dir` pointing at the copy."""
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy, {**json.loads((copy / "train_config.json").read_text()), "output_dir": str(copy)}


@needs_data
def test_grid_scores_are_those_of_decoding_with_each_setting(data, finished_run, tmp_path):
    model, tokenizer = load_model(finished_run / "model")
    validation = load_split(str(data), "de", "en", "val")
    result = tune_decoding(
        model,
        tokenizer,
        validation,
        split="val",
        tgt_lang="en",
        num_beams=[1, 3],
        length_penalties=[0.2, 2.0],
        output_dir=tmp_path / "tuning",
    )
    assert [(row["num_beams"], row["length_penalty"]) for row in result["grid"]] == [(1, None), (3, 0.2), (3, 2.0)]
    for row in result["grid"]:
        hypotheses = translate(
            model, tokenizer, validation["src"], num_beams=row["num_beams"], length_penalty=row["length_penalty"]
        )
        assert row["bleu"] == pytest.approx(score(hypotheses, validation["tgt"], "en")["bleu"])
    assert max(round(row["bleu"], 2) for row in result["grid"]) == round(
        next(
            r["bleu"]
            for r in result["grid"]
            if r["num_beams"] == result["best"]["num_beams"] and r["length_penalty"] == result["best"]["length_penalty"]
        ),
        2,
    )
    assert (tmp_path / "tuning" / "beam3-alpha0.2" / "hyp.val.en").is_file()


@needs_data
def test_apply_makes_the_choice_the_folders_default_decoding(finished_run, tmp_path):
    run, _ = copy_run(finished_run, tmp_path)
    before = json.loads((run / "model" / "generation_config.json").read_text())
    apply_decoding(None, run / "model", {"num_beams": 6, "length_penalty": 1.3})
    after = json.loads((run / "model" / "generation_config.json").read_text())
    assert (after["num_beams"], after["length_penalty"]) == (6, 1.3)
    assert {k: v for k, v in after.items() if k not in ("num_beams", "length_penalty")} == {
        k: v for k, v in before.items() if k not in ("num_beams", "length_penalty")
    }  # the paper's other settings (length_penalty_form, max_new_tokens_over_input, ...) are kept
    model, _ = load_model(run / "model")
    assert (model.generation_config.num_beams, model.generation_config.length_penalty) == (6, 1.3)
    with pytest.raises(FileNotFoundError, match="generation_config.json"):
        apply_decoding(None, tmp_path / "nothing", {"num_beams": 4, "length_penalty": 0.6})


@needs_data
def test_command_line_tunes_applies_and_writes_the_grid(data, finished_run, tmp_path, capsys):
    run, _ = copy_run(finished_run, tmp_path)
    result = tuning_module.main(
        [
            str(run / "model"),
            "--dataset",
            str(data),
            "--split",
            "val",
            "--beams",
            "1,2",
            "--length-penalties",
            "0.6,1.5",
            "--max-samples",
            "12",
            "--apply",
            "--json",
            str(tmp_path / "tuning.json"),
        ]
    )
    assert json.loads((tmp_path / "tuning.json").read_text()) == json.loads(json.dumps(result))
    assert result["num_sentences"] == 12 and len(result["grid"]) == 3
    generation = json.loads((run / "model" / "generation_config.json").read_text())
    assert generation["num_beams"] == result["best"]["num_beams"]
    assert "best on val" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        tuning_module.main([str(run / "model"), "--beams", "four"])


@needs_data
def test_a_run_with_tuning_decodes_the_test_split_with_the_choice(data, tmp_path):
    out = tmp_path / "tuned"
    settings = tiny_settings(
        data,
        out,
        max_steps=8,
        eval_steps=8,
        test_num_beams=None,
        tune_num_beams=[1, 2],
        tune_length_penalties=[0.6, 1.5],
    )
    summary = train(TrainConfig.from_dict(settings))
    best = summary["decoding_tuning"]["best"]
    assert summary["decoding_tuning"]["split"] == "val" and len(summary["decoding_tuning"]["grid"]) == 3
    assert summary["test"]["num_beams"] == best["num_beams"]
    if best["num_beams"] > 1:
        assert summary["test"]["length_penalty"] == best["length_penalty"]
    assert json.loads((out / "model" / "generation_config.json").read_text())["num_beams"] == best["num_beams"]
    assert "decoding chosen on validation" in (out / "model" / "README.md").read_text()
    assert not (out / "model" / "decoding-tuning").exists()  # the grid's hypotheses stay out of the model folder
    assert (out / "decoding-tuning").is_dir()


@needs_data
def test_rescore_tunes_a_finished_run_without_touching_its_weights(finished_run, tmp_path):
    run, saved = copy_run(finished_run, tmp_path)
    weights = (run / "model" / "model.safetensors").read_bytes()
    old_summary = json.loads((run / "summary.json").read_text())
    cfg = TrainConfig.from_dict(
        {**saved, "test_num_beams": None, "tune_num_beams": [1, 3], "tune_length_penalties": [0.6, 1.5]}
    )
    summary = rescore(cfg)
    assert summary["steps"] == old_summary["steps"] and summary["rescore_minutes"] > 0
    assert summary["test"]["num_beams"] == summary["decoding_tuning"]["best"]["num_beams"]
    assert json.loads((run / "summary.json").read_text())["decoding_tuning"] == summary["decoding_tuning"]
    assert json.loads((run / "train_config.json").read_text())["tune_num_beams"] == [1, 3]
    results = json.loads((run / "model" / "results.test2016.json").read_text())
    assert results["num_beams"] == summary["test"]["num_beams"]
    assert "decoding chosen on validation" in (run / "model" / "README.md").read_text()
    assert (run / "model" / "model.safetensors").read_bytes() == weights


@needs_data
def test_rescore_refuses_other_training_settings_and_unfinished_runs(finished_run, tmp_path):
    run, saved = copy_run(finished_run, tmp_path)
    summary = (run / "summary.json").read_bytes()
    with pytest.raises(ValueError, match="lr_factor"):
        rescore(TrainConfig.from_dict({**saved, "lr_factor": 9.0}))
    assert (run / "summary.json").read_bytes() == summary
    with pytest.raises(FileNotFoundError, match="not a finished run"):
        rescore(TrainConfig.from_dict({**saved, "output_dir": str(tmp_path / "nothing")}))
