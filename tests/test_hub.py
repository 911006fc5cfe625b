"""Sharing the project's model on the Hub: the real `huggingface_hub` client against the local Hub.

What is tested is this project's behaviour, through the Hub protocol (`hub_server.py` plays the
Hub): a pushed model and tokenizer load in a fresh process with an empty cache in which
`hf_vanilla_transformer` cannot be imported (remote code, custom pipeline) and translate the same;
`revision=` pins an earlier push; a push of the training output (`train.hub.push_model_folder`, one
commit) that fails midway leaves the repo at the previous model. The training option
`push_to_hub` is tested in test_train_pipeline.py, the model card on the Hub in test_model_card.py.
"""

from __future__ import annotations

import json

import pytest
from huggingface_hub.errors import HfHubHTTPError

from tests.hub_helpers import require_model, result_of, run_isolated, tiny_translation_model, write_corpus

pytestmark = [
    pytest.mark.timeout(60),
    # huggingface_hub's own LFS upload passes a file object as `data=` to httpx2: not ours to fix.
    pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"),
]


@pytest.fixture(autouse=True)
def _clear_injected_failures(hub_server):
    """A failure a test injected but the client never triggered must not leak into the next test."""
    yield
    hub_server.clear_failures()


GREEDY = {"num_beams": 1, "do_sample": False, "max_new_tokens": 8}
SENTENCES = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]

FRESH_PROCESS_LOAD = """
import builtins
import json
import sys

from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

prompts = []  # transformers asks "Do you wish to run the custom code?" when trust_remote_code is missing


def no_to_prompts(message=""):
    prompts.append(message)
    return "n"


builtins.input = no_to_prompts
repo_id, sentences, greedy = json.loads(sys.argv[1])
model = AutoModelForSeq2SeqLM.from_pretrained(repo_id, trust_remote_code=True)
tokenizer = AutoTokenizer.from_pretrained(repo_id, trust_remote_code=True)
translator = pipeline("translation", model=repo_id, trust_remote_code=True)
prompts_when_trusted = len(prompts)
# Without trust_remote_code, AutoTokenizer reads config.json (which has an auto_map): it prompts,
# and on "no" falls back to the plain config; the tokenizer itself needs no custom code.
plain_tokenizer = AutoTokenizer.from_pretrained(repo_id)

ids = [model.generate(**tokenizer(s, return_tensors="pt"), **greedy)[0].tolist() for s in sentences]
print("\\nRESULT " + json.dumps({
    "model_class": f"{type(model).__module__}.{type(model).__name__}",
    "pipeline_class": f"{type(translator).__module__}.{type(translator).__name__}",
    "ids": ids,
    "texts": [tokenizer.decode(i, skip_special_tokens=True) for i in ids],
    "pipeline": [translator(s, **greedy) for s in sentences],
    "prompts_when_trusted": prompts_when_trusted,
    "plain_tokenizer_prompted": len(prompts) > prompts_when_trusted,
    "encodings": [tokenizer(s)["input_ids"] for s in sentences],
    "plain_encodings": [plain_tokenizer(s)["input_ids"] for s in sentences],
}))
"""


@pytest.fixture(scope="module")
def hub_tokenizer(tmp_path_factory):
    """The project's BPE tokenizer trained on a few dozen German/English lines."""
    hvt = require_model()
    de, en = write_corpus(tmp_path_factory.mktemp("corpus"))
    return hvt.train_tokenizer([de, en], vocab_size=300)


def greedy_in_process(model, tokenizer, sentences: list[str]) -> tuple[list[list[int]], list[str]]:
    """Greedy output ids and texts, one sentence at a time (no padding), as the pipeline does."""
    import torch

    with torch.no_grad():
        ids = [model.generate(**tokenizer(s, return_tensors="pt"), **GREEDY)[0].tolist() for s in sentences]
    return ids, [tokenizer.decode(i, skip_special_tokens=True) for i in ids]


def test_pushed_model_loads_in_a_fresh_process_without_the_package(hub_server, hub_repo_id, hub_tokenizer, tmp_path):
    hvt = require_model()
    model = tiny_translation_model(hvt, len(hub_tokenizer), seed=0)
    model.push_to_hub(hub_repo_id)
    hub_tokenizer.push_to_hub(hub_repo_id)
    stored = hub_server.files(hub_repo_id)
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "configuration_vanilla_transformer.py",
        "modeling_vanilla_transformer.py",
        "pipeline_translation.py",
    } <= set(stored)
    config = json.loads(stored["config.json"])
    assert "AutoModelForSeq2SeqLM" in config["auto_map"] and "translation" in config["custom_pipelines"]

    expected_ids, expected_texts = greedy_in_process(model, hub_tokenizer, SENTENCES)
    out = result_of(run_isolated(FRESH_PROCESS_LOAD, tmp_path / "fresh", json.dumps([hub_repo_id, SENTENCES, GREEDY])))

    assert out["model_class"].startswith("transformers_modules.")  # the code came from the repo
    assert out["pipeline_class"].startswith("transformers_modules.")
    assert out["ids"] == expected_ids
    assert out["texts"] == expected_texts
    assert out["pipeline"] == [[{"translation_text": text}] for text in expected_texts]
    assert out["prompts_when_trusted"] == 0
    assert out["encodings"] == out["plain_encodings"] == [hub_tokenizer(s)["input_ids"] for s in SENTENCES]


def logits_on(model, tokenizer):
    """Logits for `SENTENCES` with a fixed decoder prefix: identical weights give identical logits."""
    import torch

    batch = tokenizer(SENTENCES, return_tensors="pt", padding=True)
    decoder_input_ids = torch.tensor([[model.config.decoder_start_token_id, 5, 6, 7]] * len(SENTENCES))
    with torch.no_grad():
        return model(**batch, decoder_input_ids=decoder_input_ids).logits


def test_revision_pins_the_first_model_after_a_second_push(hub_server, hub_repo_id, hub_tokenizer, tmp_path):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    hvt = require_model()
    first = tiny_translation_model(hvt, len(hub_tokenizer), seed=0)
    second = tiny_translation_model(hvt, len(hub_tokenizer), seed=1)
    first.push_to_hub(hub_repo_id)
    hub_tokenizer.push_to_hub(hub_repo_id)
    first_sha = hub_server.head(hub_repo_id)
    second.push_to_hub(hub_repo_id, commit_message="Second revision: other weights")
    assert hub_server.head(hub_repo_id) != first_sha

    cache = tmp_path / "cache"
    pinned = AutoModelForSeq2SeqLM.from_pretrained(
        hub_repo_id, revision=first_sha, trust_remote_code=True, cache_dir=cache
    ).eval()
    latest = AutoModelForSeq2SeqLM.from_pretrained(hub_repo_id, trust_remote_code=True, cache_dir=cache).eval()
    tokenizer = AutoTokenizer.from_pretrained(hub_repo_id, revision=first_sha, cache_dir=cache)

    assert not torch.allclose(logits_on(first, tokenizer), logits_on(second, tokenizer))
    assert torch.equal(logits_on(pinned, tokenizer), logits_on(first, tokenizer))
    assert torch.equal(logits_on(latest, tokenizer), logits_on(second, tokenizer))
    assert greedy_in_process(pinned, tokenizer, SENTENCES) == greedy_in_process(first, hub_tokenizer, SENTENCES)


@pytest.mark.parametrize(
    ("endpoint", "status", "error"),
    [
        ("lfs_upload", 403, RuntimeError),  # the weights' upload is refused (not retried): no commit is sent
        ("commit", 500, HfHubHTTPError),  # every file is uploaded, then the commit itself fails
    ],
)
def test_push_failing_midway_leaves_the_previous_model(
    hub_server, hub_repo_id, hub_tokenizer, tmp_path, endpoint, status, error
):
    """`train.hub.push_model_folder` uploads a training output as one commit: all of it or nothing."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    from train.hub import push_model_folder

    hvt = require_model()
    first = tiny_translation_model(hvt, len(hub_tokenizer), seed=0)
    for name, seed in (("first", 0), ("second", 1)):
        tiny_translation_model(hvt, len(hub_tokenizer), seed=seed).save_pretrained(tmp_path / name)
        hub_tokenizer.save_pretrained(tmp_path / name)
    push_model_folder(tmp_path / "first", hub_repo_id)
    sha, files = hub_server.head(hub_repo_id), hub_server.files(hub_repo_id)

    hub_server.fail_next(endpoint, status=status)
    with pytest.raises(error):
        push_model_folder(tmp_path / "second", hub_repo_id)
    assert hub_server.head(hub_repo_id) == sha
    assert hub_server.files(hub_repo_id) == files

    pulled = AutoModelForSeq2SeqLM.from_pretrained(hub_repo_id, trust_remote_code=True, cache_dir=tmp_path / "c")
    assert torch.equal(logits_on(pulled.eval(), hub_tokenizer), logits_on(first, hub_tokenizer))
