"""A saved folder works in a fresh Python process where hf_vanilla_transformer is NOT importable:
model, tokenizer, translation pipeline and feature extraction via trust_remote_code."""

import json
import textwrap

import pytest
import torch
from transformers import pipeline

import hf_vanilla_transformer as hvt
from tests.helpers import multi30k_tokenizer
from tests.hub_helpers import run_isolated

SENTENCES = ["Ein Hund läuft.", "Zwei Männer stehen auf der Straße."]

FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    # run_isolated's prelude has already checked that hf_vanilla_transformer cannot be imported
    import torch
    from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer, pipeline
    path = sys.argv[1]
    sentences = json.loads(sys.argv[2])
    model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=True).eval()
    tok = AutoTokenizer.from_pretrained(path)
    batch = tok(sentences, return_tensors="pt", padding=True)
    with torch.no_grad():
        ids = model.generate(**batch, num_beams=4, max_new_tokens=8)
        logits = model(**batch, decoder_input_ids=ids[:, :4]).logits
    translate = pipeline("translation", model=path, trust_remote_code=True)
    features = pipeline("feature-extraction", model=path, trust_remote_code=True)
    print("RESULT " + json.dumps({
        "module": type(model).__module__,
        "generated": tok.batch_decode(ids, skip_special_tokens=True),
        "logits_sum": float(logits.double().sum()),
        "pipeline": translate(sentences, num_beams=4, max_new_tokens=8, batch_size=2),
        "pipeline_single": translate(sentences[0], num_beams=4, max_new_tokens=8),
        "features_shape": list(torch.tensor(features(sentences[0])).shape),
    }))
    """
)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    tok = multi30k_tokenizer()
    torch.manual_seed(0)
    config = hvt.VanillaTransformerConfig.small(
        vocab_size=len(tok), d_model=64, encoder_ffn_dim=128, decoder_ffn_dim=128
    )
    model = hvt.VanillaTransformerForConditionalGeneration(config).eval()
    path = tmp_path_factory.mktemp("saved")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path, model, tok


def test_saved_folder_has_code_and_auto_map(saved_model):
    path, _, _ = saved_model
    files = {p.name for p in path.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "configuration_vanilla_transformer.py",
        "modeling_vanilla_transformer.py",
        "attention.py",
        "layers.py",
        "positional_encoding.py",
        "pipeline_translation.py",
    } <= files
    config = json.loads((path / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_vanilla_transformer.VanillaTransformerConfig",
        "AutoModel": "modeling_vanilla_transformer.VanillaTransformerModel",
        "AutoModelForSeq2SeqLM": "modeling_vanilla_transformer.VanillaTransformerForConditionalGeneration",
    }
    assert config["custom_pipelines"]["translation"]["impl"] == "pipeline_translation.TranslationPipeline"
    generation = json.loads((path / "generation_config.json").read_text())
    assert (generation["num_beams"], generation["length_penalty"]) == (4, 0.6)


def test_fresh_process_without_the_package_translates_the_same(saved_model, tmp_path):
    path, model, tok = saved_model
    # `python -I`, an empty HF_HOME (no cached remote code) and an import blocker, so that the
    # package cannot be imported even where it is pip-installed.
    stdout = run_isolated(FRESH_PROCESS, tmp_path / "fresh", str(path), json.dumps(SENTENCES), timeout=300)
    # AutoTokenizer without trust_remote_code prints (and, on closed stdin, declines) transformers'
    # remote-code prompt for the config, on the same line; the tokenizer itself needs no custom code.
    remote = json.loads(stdout.split("RESULT ", 1)[1].splitlines()[0])

    batch = tok(SENTENCES, return_tensors="pt", padding=True)
    with torch.no_grad():
        ids = model.generate(**batch, num_beams=4, max_new_tokens=8)
        logits = model(**batch, decoder_input_ids=ids[:, :4]).logits
    assert remote["module"].startswith("transformers_modules.")
    assert remote["generated"] == tok.batch_decode(ids, skip_special_tokens=True)
    assert remote["logits_sum"] == pytest.approx(float(logits.double().sum()), rel=1e-6)
    assert [r["translation_text"] for r in remote["pipeline"]] == remote["generated"]
    assert remote["pipeline_single"] == [{"translation_text": remote["generated"][0]}]
    assert remote["features_shape"] == [1, len(tok(SENTENCES[0]).input_ids), 64]


def test_in_process_pipeline(saved_model):
    path, model, tok = saved_model
    translate = pipeline("translation", model=str(path), trust_remote_code=True)
    out = translate(SENTENCES, num_beams=1, max_new_tokens=6)
    ids = model.generate(**tok(SENTENCES, return_tensors="pt", padding=True), num_beams=1, max_new_tokens=6)
    assert [o["translation_text"] for o in out] == tok.batch_decode(ids, skip_special_tokens=True)
    with pytest.raises(ValueError, match="unknown translation pipeline arguments"):
        translate(SENTENCES[0], beams=4)
    with pytest.raises(ValueError, match="empty list"):
        translate([])


def test_pipeline_empty_inputs_and_overlong_inputs(saved_model):
    """Empty input -> "" (as train.translate does for empty lines); too long -> a clear error, or truncation."""
    path, model, tok = saved_model
    translate = pipeline("translation", model=str(path), trust_remote_code=True)
    out = translate(["", SENTENCES[0], "   "], num_beams=1, max_new_tokens=6)
    assert [o["translation_text"] for o in out][::2] == ["", ""]
    assert out[1] == translate(SENTENCES[0], num_beams=1, max_new_tokens=6)[0]
    assert translate("") == [{"translation_text": ""}]
    too_long = " ".join(["Hund"] * (model.config.max_position_embeddings + 10))
    with pytest.raises(ValueError, match="longer than the model's 512 positions; pass truncation=True"):
        translate(too_long, num_beams=1, max_new_tokens=2)
    assert len(translate(too_long, num_beams=1, max_new_tokens=2, truncation=True)) == 1
