"""Model cards: `train.model_card.build_model_card` and its template (training tooling, not the model package).

The metadata is checked twice: by the local Hub's `/api/validate-yaml` (what `ModelCard.validate()`
and every commit of a README.md call) and locally by `huggingface_hub`'s own parsing. The card's
usage snippet is run, as a user would, against a model pulled from the local Hub.
"""

from __future__ import annotations

import importlib.util
import json
import re
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
from huggingface_hub.repocard_data import model_index_to_eval_results

from tests.hub_helpers import require_model, run_isolated, tiny_translation_model, write_corpus
from train.model_card import TEMPLATE_PATH, build_model_card

pytestmark = [
    pytest.mark.timeout(60),
    # huggingface_hub's own LFS upload passes a file object as `data=` to httpx2: not ours to fix.
    pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"),
]

BLEU_SIG = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
CHRF_SIG = "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"
SAMPLE_RESULTS = {
    "test_2016_flickr": {
        "split": "test",
        "bleu": 35.123,
        "bleu_signature": BLEU_SIG,
        "chrf": 61.84,
        "chrf_signature": CHRF_SIG,
        "decoding": "beam 4, α 0.6",
    },
    "val": {"split": "validation", "bleu": 36.5, "bleu_signature": BLEU_SIG},
}
SAMPLE_HPARAMS = {
    "d_model": 256,
    "learning_rate": 7e-4,
    "warmup_steps": 4000,
    "label_smoothing": 0.1,
    "adam_betas": (0.9, 0.98),
    "max_tokens_per_batch": 4096,
}


def sample_card(**overrides) -> ModelCard:
    kwargs = dict(
        repo_id="user/vt-multi30k-de-en",
        src_lang="de",
        tgt_lang="en",
        dataset_name="multi30k",
        results=SAMPLE_RESULTS,
        hyperparameters=SAMPLE_HPARAMS,
    )
    return build_model_card(**{**kwargs, **overrides})


def python_snippet(card: ModelCard) -> str:
    """The (single) ```python block of a rendered card."""
    blocks = re.findall(r"```python\n(.*?)```", str(card), re.DOTALL)
    assert len(blocks) == 1, f"expected one python block, found {len(blocks)}"
    return blocks[0]


# ---- metadata ---------------------------------------------------------------------------------


def test_card_passes_the_hub_metadata_validation(hub_server):
    sample_card().validate()  # POST /api/validate-yaml on the local Hub; raises ValueError on errors
    sample_card(base_model="user/vt-multi30k-base", license="cc-by-nc-4.0").validate()


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ("license:\n- mit\n- apache-2.0", '"license" must be a string'),
        ("license: not-a-license", "license identifier"),
        ("language: German", '"language"'),
        (
            "model-index:\n- name: x\n  results:\n  - task: {type: translation}\n"
            "    dataset: {type: d, name: D}\n    metrics: []",
            "metrics must be a non-empty array",
        ),
        (
            "model-index:\n- name: x\n  results:\n  - task: {type: translation}\n"
            "    dataset: {type: d, name: D}\n    metrics:\n    - {type: bleu, value: [1]}",
            "must be a number",
        ),
        ("model-index:\n- results: []", "name must be a non-empty string"),
        ("tags: [a\nb: c", "Invalid YAML"),
    ],
)
def test_hub_validation_rejects_bad_metadata(hub_server, metadata, error):
    # Posted as raw text: `ModelCard(...)` would normalise some of these on parsing.
    payload = json.dumps({"content": f"---\n{metadata}\n---\n\n# Card\n", "repoType": "model"}).encode()
    request = urllib.request.Request(
        f"{hub_server.url}/api/validate-yaml", data=payload, method="POST", headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=30)
    assert answer.value.code == 400
    messages = [e["message"] for e in json.loads(answer.value.read())["errors"]]
    assert any(error in m for m in messages), messages


def test_card_validate_raises_on_hub_errors(hub_server):
    with pytest.raises(ValueError, match='"license" must be a string'):
        ModelCard("---\nlicense:\n- mit\n- apache-2.0\n---\n\n# Card\n").validate()


def test_commit_with_invalid_readme_fails_before_any_upload(hub_server, hub_repo_id):
    api = HfApi()
    api.create_repo(hub_repo_id)
    head = hub_server.head(hub_repo_id)
    preuploads = hub_server.calls("preupload")
    with pytest.raises(ValueError, match="Invalid metadata in README.md"):
        api.create_commit(
            hub_repo_id,
            [CommitOperationAdd("README.md", b"---\nlicense: [mit]\n---\n# x\n")],
            commit_message="bad card",
        )
    assert hub_server.calls("preupload") == preuploads and hub_server.head(hub_repo_id) == head


def test_card_metadata_round_trips_through_huggingface_hub_parsing():
    card = sample_card(base_model="user/vt-multi30k-base")
    data = ModelCard(str(card)).data  # parse the rendered README like the Hub client does
    assert data.to_dict() == card.data.to_dict()
    assert data.language == ["de", "en"] and data.license == "apache-2.0"
    assert data.pipeline_tag == "translation" and data.library_name == "transformers"
    assert data.datasets == ["bentrevett/multi30k"] and data.base_model == "user/vt-multi30k-base"
    assert data["base_model_relation"] == "finetune"
    assert {"translation", "transformer", "vanilla-transformer", "de-en"} <= set(data.tags)

    name, results = model_index_to_eval_results(data.to_dict()["model-index"])
    assert name == "vt-multi30k-de-en"
    scores = {(r.dataset_split, r.metric_type): (r.metric_value, r.metric_config) for r in results}
    assert scores == {
        ("test", "bleu"): (35.12, BLEU_SIG),
        ("test", "chrf"): (61.84, CHRF_SIG),
        ("validation", "bleu"): (36.5, BLEU_SIG),
    }
    assert {r.task_type for r in results} == {"translation"}


def test_card_body_has_the_required_sections():
    text = str(sample_card(model_config={"d_model": 256, "encoder_layers": 3, "encoder_attention_heads": 4}))
    for heading in (
        "## Model description",
        "## How to use",
        "## Training data",
        "## Training procedure",
        "## Evaluation",
        "## Limitations",
        "## License and attribution",
        "## Citation",
    ):
        assert heading in text
    assert "@inproceedings{vaswani2017attention" in text and "elliott-etal-2016-multi30k" in text
    assert f"`{BLEU_SIG}`" in text and f"`{CHRF_SIG}`" in text  # full signatures
    assert "| test_2016_flickr | test | 35.12 | 61.84 | sacreBLEU `13a` |" in text
    assert "| `learning_rate` | 0.0007 |" in text and "| d_model | 256 |" in text
    assert "non-commercial research" in text  # Multi30k's terms of use
    assert 'pipeline("translation", model=repo_id, trust_remote_code=True)' in python_snippet(sample_card())

    tatoeba = str(sample_card(src_lang="en", tgt_lang="zh", dataset_name="tatoeba-cmn-eng", results={}))
    assert "CC BY 2.0 France" in tatoeba and "tatoeba.org" in tatoeba
    assert "No evaluation results were recorded" in tatoeba and "model-index" not in tatoeba


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"results": {"test": {"bleu": 30.0}}}, "bleu_signature"),
        ({"results": {"test": {"bleu": 30.0, "bleu_signature": BLEU_SIG, "chrf": 50.0}}}, "chrf_signature"),
        ({"results": {"test": {"bleu": 30.0, "bleu_signature": BLEU_SIG, "meteor": 1}}}, "unknown keys"),
        ({"results": {"test": {"bleu": 30.0, "bleu_signature": "BLEU+case.mixed"}}}, "not a sacreBLEU signature"),
        ({"src_lang": "German"}, "ISO 639"),
        ({"repo_id": "no-namespace"}, "namespace/name"),
        ({"src_lang": "ja", "tgt_lang": "en"}, "example_source"),
    ],
)
def test_build_model_card_rejects_bad_input(overrides, error):
    with pytest.raises(ValueError, match=re.escape(error)):
        sample_card(**overrides)


def test_template_lives_with_the_training_code():
    """The card is training tooling: its template sits beside `train/model_card.py`, and the model
    package neither ships it nor imports jinja2 for it."""
    assert TEMPLATE_PATH.parent.name == "train" and "{{ card_data }}" in TEMPLATE_PATH.read_text(encoding="utf-8")
    package = Path(importlib.util.find_spec("hf_vanilla_transformer").origin).parent
    assert not (package / "model_card_template.md").exists() and not (package / "model_card.py").exists()


def test_card_states_the_models_own_decoding_defaults():
    """The usage section reads decoding from the model's generation config, not a restated default."""
    paper = str(sample_card(generation_config={"num_beams": 4, "length_penalty": 0.6, "max_new_tokens_over_input": 50}))
    assert "beam search with 4 beams, length penalty α = 0.6 (GNMT's ((5 + length) / 6)^α" in paper
    assert "at most input length + 50 output tokens" in paper
    greedy = str(sample_card(generation_config={"num_beams": 1, "max_new_tokens": 40, "length_penalty_form": "hf"}))
    assert "`generation_config.json`: greedy decoding, at most 40 output tokens." in greedy
    assert "length penalty" not in greedy.split("## How to use")[1].split("## Training data")[0]
    assert "`generation_config.json`. Pass `num_beams=`" in str(sample_card())


# ---- the usage snippet, against a model on the (local) Hub --------------------------------------


def test_card_usage_snippet_runs_against_a_model_from_the_hub(hub_server, tmp_path):
    hvt = require_model()
    repo_id = f"{hub_server.username}/vt-card-{uuid.uuid4().hex[:8]}"
    tokenizer = hvt.train_tokenizer(list(write_corpus(tmp_path / "corpus")), vocab_size=300)
    model = tiny_translation_model(hvt, len(tokenizer), seed=0)
    model.generation_config.max_new_tokens = 12  # keep the snippet's beam search short on an untrained model
    model.push_to_hub(repo_id)
    tokenizer.push_to_hub(repo_id)
    card = sample_card(repo_id=repo_id, model_config=model.config)
    card.push_to_hub(repo_id)  # validated by the Hub (validate-yaml) on commit

    info = HfApi().model_info(repo_id)
    assert info.pipeline_tag == "translation" and info.library_name == "transformers"
    assert info.card_data.eval_results[0].metric_config == BLEU_SIG

    stdout = run_isolated(python_snippet(card), tmp_path / "snippet")
    assert "Do you wish to run the custom code" not in stdout  # no interactive trust prompt
    outputs = [line for line in stdout.splitlines() if line.strip()]
    assert len(outputs) == 2, stdout  # the generate() translation and the pipeline translation
    assert outputs[0] == outputs[1]  # same default decoding (generation_config.json) both ways


def test_a_multi30k_run_card_also_reports_lowercased_tokenised_bleu():
    """The run's card has a row for the Multi30k papers' BLEU (lowercased, Moses-tokenised) with its signature."""
    from train.config import TrainConfig
    from train.model_card import card_results

    lc_sig = BLEU_SIG + "|pre:moses-lc-norm-tok"
    test = {
        "bleu": 36.35, "bleu_signature": BLEU_SIG, "chrf": 59.87, "chrf_signature": CHRF_SIG,
        "num_beams": 4, "length_penalty": 0.6, "length_penalty_form": "gnmt",
        "bleu_tok_lc": 36.72, "bleu_tok_lc_signature": lc_sig,
    }  # fmt: skip
    results = card_results(TrainConfig.from_dict({"src_lang": "en", "tgt_lang": "de"}), test)
    assert list(results) == ["test_2016_flickr", "test_2016_flickr, lowercased and tokenised"]
    text = str(sample_card(results=results))
    assert "| test_2016_flickr | test | 36.35 | 59.87 | sacreBLEU `13a` |" in text
    assert "| test_2016_flickr, lowercased and tokenised | test | 36.72 | – | Moses (sacremoses), lowercased" in text
    assert lc_sig in text


def test_a_card_of_a_model_trained_on_lowercased_tokenised_text_says_so():
    """`multi30k-lc-tok`: both rows score the model's own lowercased, tokenised output (no cased score exists),
    and the training data section names that text."""
    from train.config import TrainConfig
    from train.model_card import KNOWN_DATASETS, card_results

    test = {
        "bleu": 40.1, "bleu_signature": BLEU_SIG, "chrf": 60.2, "chrf_signature": CHRF_SIG,
        "num_beams": 5, "length_penalty": 1.4, "length_penalty_form": "gnmt",
        "bleu_tok_lc": 40.6, "bleu_tok_lc_signature": BLEU_SIG + "|pre:none(model-outputs-lc-tok-text)",
    }  # fmt: skip
    cfg = TrainConfig.from_dict({"dataset": "multi30k-lc-tok", "src_lang": "en", "tgt_lang": "de"})
    results = card_results(cfg, test)
    text = str(sample_card(results=results, dataset_name="multi30k-lc-tok"))
    assert "sacreBLEU (`13a`) on the model's lowercased, tokenised output against the `tok/` references" in text
    assert "| test_2016_flickr, lowercased and tokenised | test | 40.6 | – | none: the model outputs lowercased" in text
    assert "on detokenised, cased output" not in text
    assert KNOWN_DATASETS["multi30k-lc-tok"].description.split("The upstream")[1] in text


def test_the_card_of_a_run_on_lowercased_tokenised_text_shows_such_input(tmp_path):
    """A `multi30k-lc-tok` run's card: the usage snippet translates lowercased, tokenised text, and the first
    limitation says how to prepare input."""
    from tests.helpers import tiny_model
    from train.config import TrainConfig
    from train.model_card import write_model_card

    cfg = TrainConfig.from_dict({"dataset": "multi30k-lc-tok", "src_lang": "en", "tgt_lang": "de"})
    text = write_model_card(cfg, tiny_model(), tmp_path, None).read_text(encoding="utf-8")
    assert 'tokenizer(["a man is riding a bicycle down the street ."]' in text
    limitations = text.split("## Limitations")[1]
    assert limitations.lstrip().startswith("- It reads and writes lowercased, Moses-tokenised text")
    assert 'MosesTokenizer(lang="en")' in limitations
    plain = write_model_card(TrainConfig.from_dict({}), tiny_model(), tmp_path, None).read_text(encoding="utf-8")
    assert "Moses-tokenised" not in plain and "Ein Mann fährt mit dem Fahrrad die Straße entlang." in plain
