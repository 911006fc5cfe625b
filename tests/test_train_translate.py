"""`train.translate` and `train.evaluate_model` on a tiny saved model folder: which decoding they use,
how they read input lines, and how they fail on bad input."""

from __future__ import annotations

import errno
import io
import json
import os
import sys
from pathlib import Path

import pytest
import torch
from transformers import GenerationMixin

from hf_vanilla_transformer import generation as generation_module
from tests._tiny_tokenizer import tiny_tokenizer
from tests.helpers import tiny_model
from tests.train_helpers import one_thread  # noqa: F401  (autouse fixture: one torch thread)
from train import evaluate_model as evaluate_cli
from train import translate as translate_cli
from train.model_folder import load_model

SENTENCES = ["Ein Hund läuft.", "Zwei Männer stehen auf der Straße.", "Ein Mädchen malt."]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A model folder whose generation config departs from the paper's: beam 2, length penalty 1.0."""
    folder = tmp_path_factory.mktemp("model")
    tokenizer = tiny_tokenizer()
    model = tiny_model(vocab_size=len(tokenizer))
    model.generation_config.num_beams = 2
    model.generation_config.length_penalty = 1.0
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def used_configs(monkeypatch) -> list:
    """(beams, length penalty) of each batch `generate()` really decoded: after transformers merged its arguments
    into the generation config, or as this package's loops (`greedy_search.py`, `beam_search.py`) got them."""
    seen = []
    original = GenerationMixin._prepare_generation_config

    def record(self, *args, **kwargs):
        config, model_kwargs = original(self, *args, **kwargs)
        seen.append((config.num_beams, config.length_penalty))
        return config, model_kwargs

    def recorded(own_loop):
        def record_own(model, input_ids, attention_mask, call):
            seen.append((call.num_beams, call.length_penalty))
            return own_loop(model, input_ids, attention_mask, call)

        return record_own

    monkeypatch.setattr(GenerationMixin, "_prepare_generation_config", record)
    for loop in ("greedy_search", "beam_search"):
        monkeypatch.setattr(generation_module, loop, recorded(getattr(generation_module, loop)))
    return seen


def write_text(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


# ---- decoding settings: the model's generation config unless the user gives one ----------------


def test_translate_cli_decodes_with_the_models_generation_config(model_dir, tmp_path, used_configs):
    source = write_text(tmp_path / "in.de", "\n".join(SENTENCES) + "\n")
    translate_cli.main([str(model_dir), "--input", str(source), "--output", str(tmp_path / "out.en")])
    assert used_configs and set(used_configs) == {(2, 1.0)}

    used_configs.clear()
    translate_cli.main(
        [str(model_dir), "--input", str(source), "--output", str(tmp_path / "out.en"), "--beams", "3"]
        + ["--length-penalty", "0.6"]
    )
    assert set(used_configs) == {(3, 0.6)}


def test_translate_packs_the_weights_once_for_all_its_batches(model_dir, monkeypatch):
    """One `packed_weights()` block around the batches (onednn.py): every `generate()` call after the first finds
    the weights packed already, and the translations are those of batch-by-batch decoding."""
    from hf_vanilla_transformer import onednn

    model, tokenizer = load_model(model_dir)
    texts = ["guten morgen", "ein mann", "zwei hunde spielen", "ja", "die katze schläft"]
    separately = [translate_cli.translate(model, tokenizer, [text])[0] for text in texts]
    packed_at_call = []
    original = type(model).generate

    def spy(self, *args, **kwargs):
        packed = onednn._PACKED.get()
        packed_at_call.append((id(packed), len(packed)) if packed is not None else None)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "generate", spy)
    with onednn.prefer_onednn(True):  # every layer packed on every CPU, whatever this one routes by default
        assert translate_cli.translate(model, tokenizer, texts, batch_tokens=8) == separately
    assert len(packed_at_call) > 2 and len({block for block, _ in packed_at_call}) == 1
    assert packed_at_call[0][1] == 0 and all(count > 0 for _, count in packed_at_call[1:])


def test_batch_size_bounds_the_sentences_per_batch(model_dir, monkeypatch):
    """`batch_size` caps a batch's sentences (the token budget still applies); translations stay the same."""
    model, tokenizer = load_model(model_dir)
    texts = ["guten morgen", "ein mann", "zwei hunde spielen", "ja", "die katze schläft"]
    rows = []
    original = type(model).generate

    def spy(self, input_ids=None, **kwargs):
        rows.append(input_ids.shape[0])
        return original(self, input_ids=input_ids, **kwargs)

    expected = translate_cli.translate(model, tokenizer, texts)
    monkeypatch.setattr(type(model), "generate", spy)
    assert translate_cli.translate(model, tokenizer, texts, batch_size=2) == expected
    assert rows == [2, 2, 1]
    rows.clear()
    translate_cli.translate(model, tokenizer, texts)
    assert rows == [5]  # the token budget alone: one batch
    with pytest.raises(ValueError, match="batch_size must be >= 1 or None, got 0"):
        translate_cli.translate(model, tokenizer, texts, batch_size=0)


@pytest.mark.parametrize("beams", [1, 2])
def test_min_new_tokens_holds_every_output_to_a_length(model_dir, monkeypatch, beams):
    """`min_new_tokens` equal to `max_new_tokens` makes every output exactly that long, whatever the model would
    say: how a time budget times the decoding of an untrained model (`AfterTrainingTimer.before_training`)."""
    model, tokenizer = load_model(model_dir)
    outputs = []
    original = type(model).generate

    def spy(self, *args, **kwargs):
        generated = original(self, *args, **kwargs)
        outputs.append(generated)
        return generated

    monkeypatch.setattr(type(model), "generate", spy)
    translated = translate_cli.translate(
        model, tokenizer, SENTENCES, num_beams=beams, min_new_tokens=6, max_new_tokens=6, batch_size=2
    )
    assert len(translated) == len(SENTENCES) and len(outputs) == 2
    for generated in outputs:  # the decoder start token, then 6 tokens none of which ends or pads the output
        assert generated.shape[1] == 7
        assert not torch.isin(generated[:, 1:], torch.tensor([tokenizer.eos_token_id, tokenizer.pad_token_id])).any()


def test_evaluate_model_decodes_and_records_the_models_generation_config(model_dir, tmp_path, used_configs):
    data = tmp_path / "data"
    data.mkdir()
    write_text(data / "test.de", "\n".join(SENTENCES) + "\n")
    write_text(data / "test.en", "A dog runs.\nTwo men stand on the street.\nA girl paints.\n")
    out = tmp_path / "eval"
    results = evaluate_cli.evaluate_model(model_dir, dataset=str(data), split="test", output_dir=out)
    assert set(used_configs) == {(2, 1.0)}
    recorded = json.loads((out / "results.test.json").read_text(encoding="utf-8"))
    assert (recorded["num_beams"], recorded["length_penalty"]) == (2, 1.0) == (results["num_beams"], 1.0)
    assert recorded["max_new_tokens_over_input"] == 50 and recorded["max_new_tokens"] is None

    used_configs.clear()
    evaluate_cli.main([str(model_dir), "--dataset", str(data), "--split", "test", "--output-dir", str(out)])
    evaluate_cli.main(
        [str(model_dir), "--dataset", str(data), "--split", "test", "--output-dir", str(out), "--beams", "1"]
    )
    assert [beams for beams, _ in used_configs] == [2, 1]
    recorded = json.loads((out / "results.test.json").read_text(encoding="utf-8"))
    assert (recorded["num_beams"], recorded["length_penalty"]) == (1, 1.0)


def test_dtype_bfloat16_loads_bf16_weights_translates_and_is_recorded(model_dir, tmp_path, monkeypatch):
    dtypes = []
    original = translate_cli.translate

    def record(model, *args, **kwargs):
        dtypes.append(model.dtype)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(translate_cli, "translate", record)
    source = write_text(tmp_path / "in.de", "\n".join(SENTENCES) + "\n")
    translate_cli.main(
        [str(model_dir), "--input", str(source), "--output", str(tmp_path / "out.en"), "--dtype", "bfloat16"]
    )
    assert dtypes == [torch.bfloat16]
    assert (tmp_path / "out.en").read_text(encoding="utf-8").count("\n") == len(SENTENCES)
    model, _ = load_model(model_dir, dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in load_model(model_dir)[0].parameters()} == {torch.float32}  # the default

    data = tmp_path / "data"
    data.mkdir()
    write_text(data / "test.de", "\n".join(SENTENCES) + "\n")
    write_text(data / "test.en", "A dog runs.\nTwo men stand on the street.\nA girl paints.\n")
    for dtype in ("float32", "bfloat16"):
        evaluate_cli.main(
            [
                str(model_dir),
                "--dataset",
                str(data),
                "--split",
                "test",
                "--output-dir",
                str(tmp_path / dtype),
                "--dtype",
                dtype,
            ]
        )
        assert json.loads((tmp_path / dtype / "results.test.json").read_text(encoding="utf-8"))["dtype"] == dtype
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_model(model_dir, dtype="float16")
    with pytest.raises(SystemExit):
        translate_cli.main([str(model_dir), "--dtype", "fp16"])


def test_evaluate_model_reads_multi30k_and_its_tok_references_from_the_env_dir(model_dir, tmp_path, monkeypatch):
    """`$HVT_MULTI30K_DIR` names the copy for the text and for the `tok/` references alike."""
    copy = tmp_path / "m30k"
    (copy / "tok").mkdir(parents=True)
    for stem in ("train", "val", "test2016"):
        write_text(copy / f"{stem}.de", "\n".join(SENTENCES[:2]) + "\n")
        write_text(copy / f"{stem}.en", "A dog runs.\nTwo men stand on the street.\n")
    write_text(copy / "tok" / "test2016.en", "a dog runs .\ntwo men stand on the street .\n")
    monkeypatch.setenv("HVT_MULTI30K_DIR", str(copy))
    results = evaluate_cli.evaluate_model(model_dir, dataset="multi30k", split="test", output_dir=tmp_path / "out")
    assert results["num_sentences"] == 2  # the copy's test set, not another one
    assert "bleu_tok_lc" in results and "pre:moses-lc-norm-tok" in results["bleu_tok_lc_signature"]
    assert (tmp_path / "out" / "hyp.test.en").read_text(encoding="utf-8").count("\n") == 2


# ---- input lines: one output line per input line ---------------------------------------------------


def run_cli_on_stdin(monkeypatch, capsys, model_dir: Path, raw: bytes, *flags: str) -> str:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8"))
    translate_cli.main([str(model_dir), "--max-new-tokens", "3", *flags])
    return capsys.readouterr().out


def test_one_output_line_per_input_line_whatever_characters_the_lines_hold(model_dir, monkeypatch, capsys):
    """`printf 'Ein Hund\\xe2\\x80\\xa8läuft.\\nZwei Männer.\\n' | python -m train.translate MODEL`: 2 lines
    in, 2 lines out (str.splitlines would see 3: U+2028 is a line separator to it)."""
    out = run_cli_on_stdin(monkeypatch, capsys, model_dir, b"Ein Hund\xe2\x80\xa8l\xc3\xa4uft.\nZwei M\xc3\xa4nner.\n")
    assert out.count("\n") == 2 and out.endswith("\n")
    odd = "A\u2028b.\nC\x85d.\r\nE\x0cf.\nG\u2029h.\nI\x1cj.\x1d\x1e\n"  # separators splitlines() breaks at
    assert len(odd.splitlines()) > 5
    out = run_cli_on_stdin(monkeypatch, capsys, model_dir, odd.encode("utf-8"))
    assert out.count("\n") == 5 and "\r" not in out


def test_empty_input_lines_give_empty_output_lines(model_dir, monkeypatch, capsys):
    model, tokenizer = load_model(model_dir)
    sources = []
    generate = model.generate

    def recording_generate(**inputs):
        sources.extend(text.strip() for text in tokenizer.batch_decode(inputs["input_ids"], skip_special_tokens=True))
        return generate(**inputs)

    monkeypatch.setattr(model, "generate", recording_generate)
    monkeypatch.setattr(translate_cli, "load_model", lambda path, dtype: (model, tokenizer))
    out = run_cli_on_stdin(monkeypatch, capsys, model_dir, b"\nEin Hund.\n   \n\nZwei M\xc3\xa4nner.\n\n")
    lines = out.split("\n")
    assert len(lines) == 7 and lines[-1] == ""  # 6 lines and the final line end
    assert [i for i, line in enumerate(lines[:6]) if line == ""] == [0, 2, 3, 5]
    assert sorted(sources) == ["Ein Hund.", "Zwei Männer."]  # the model ran on the two sentences only
    assert run_cli_on_stdin(monkeypatch, capsys, model_dir, b"\n\n") == "\n\n"


def test_translate_writes_one_line_per_sentence_even_if_a_translation_holds_a_line_break(model_dir, monkeypatch):
    model, tokenizer = load_model(model_dir)
    monkeypatch.setattr(tokenizer, "batch_decode", lambda ids, **kwargs: ["two\nlines\r"] * len(ids))
    assert translate_cli.translate(model, tokenizer, ["Ein Hund.", "", "Zwei."], max_new_tokens=2) == [
        "two lines",
        "",
        "two lines",
    ]


# ---- bad input: clear errors, nothing written --------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value"), [("--beams", "0"), ("--beams", "-2"), ("--beams", "four"), ("--batch-tokens", "0")]
)
def test_bad_flags_are_refused_by_the_argument_parser(model_dir, flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        translate_cli.main([str(model_dir), flag, value])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"argument {flag}: " in error and "positive integer" in error
    with pytest.raises(SystemExit):
        evaluate_cli.main([str(model_dir), flag if flag == "--beams" else "--max-samples", value])


def test_non_utf8_input_names_file_line_and_column(model_dir, tmp_path, monkeypatch, capsys):
    source = tmp_path / "latin1.de"
    source.write_bytes("Ein Hund.\nZwei M\xe4nner.\n".encode("latin-1"))
    output = tmp_path / "out.en"
    with pytest.raises(ValueError, match=r"latin1\.de:2: not valid UTF-8 \(byte 0xe4 at column 7"):
        translate_cli.main([str(model_dir), "--input", str(source), "--output", str(output)])
    assert not output.exists()
    with pytest.raises(ValueError, match=r"<stdin>:2: not valid UTF-8"):
        run_cli_on_stdin(monkeypatch, capsys, model_dir, source.read_bytes())


def test_non_utf8_training_data_names_file_and_line(tmp_path):
    from train.data import DataError, load_parallel

    (tmp_path / "train.de").write_bytes(b"Ein Hund.\nZwei Katzen.\nDrei M\xe4use.\n")
    (tmp_path / "train.en").write_text("A dog.\nTwo cats.\nThree mice.\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train\.de:3: not valid UTF-8 \(byte 0xe4 at column 7"):
        load_parallel(tmp_path, "de", "en")


def test_a_sentence_longer_than_the_position_table_is_an_error_naming_its_line(model_dir, tmp_path):
    """No silent truncation: the limit is max_position_embeddings tokens (64 here), `</s>` included."""
    model, tokenizer = load_model(model_dir)
    limit = model.config.max_position_embeddings
    long_line = " ".join(["Hund"] * 200)
    length = len(tokenizer(long_line).input_ids)
    source = write_text(tmp_path / "in.de", f"Ein Hund.\n\n{long_line}\n")
    output = tmp_path / "out.en"
    with pytest.raises(ValueError, match=rf"line 3 is {length} tokens long, more than the model's {limit} positions"):
        translate_cli.main([str(model_dir), "--input", str(source), "--output", str(output)])
    assert not output.exists()
    fitting = "Hund"
    while len(tokenizer(fitting + " a").input_ids) <= limit:
        fitting += " a"
    assert len(tokenizer(fitting).input_ids) == limit  # exactly at the limit: translated
    assert len(translate_cli.translate(model, tokenizer, [fitting], max_new_tokens=2)) == 1


def test_output_file_is_replaced_only_when_the_translation_is_complete(model_dir, tmp_path, monkeypatch):
    source = write_text(tmp_path / "in.de", "Ein Hund.\nZwei Männer.\n")
    output = write_text(tmp_path / "out.en", "previous translations\n")

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(OSError, match="No space left"):
        translate_cli.main([str(model_dir), "--input", str(source), "--output", str(output), "--max-new-tokens", "2"])
    assert output.read_text(encoding="utf-8") == "previous translations\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.de", "out.en"]  # no temporary file left
