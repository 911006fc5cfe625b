"""Model cards (README.md) of the models this project trains.

`build_model_card` fills the Jinja template `model_card_template.md` (beside this file) and the
card's YAML metadata: license, languages, datasets, tags, `pipeline_tag: translation`,
`library_name: transformers`, `base_model` for fine-tunes, and a `model-index` with the BLEU and chrF
results (one `EvalResult` per metric and test set, the sacreBLEU signature as metric config).
`write_model_card` builds the card of a finished training run from its settings and test results
and saves it as the model folder's `README.md`; `rewrite_model_card` builds it again, with the current
card code, from what a finished run saved (`python -m train.recipe --rewrite-cards`).

    card = build_model_card(
        repo_id="user/vt-multi30k-de-en", src_lang="de", tgt_lang="en", dataset_name="multi30k",
        results={"test_2016_flickr": {"bleu": 35.1, "bleu_signature": str(bleu.get_signature()),
                                      "chrf": 61.8, "chrf_signature": str(chrf.get_signature())}},
        hyperparameters={"d_model": 256, "warmup_steps": 4000, ...},
    )
    card.save("runs/my-run/model/README.md")      # or card.push_to_hub(repo_id)

This is training tooling (it needs jinja2, a `train` extra); the model package does not use it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from train.config import TrainConfig
from train.data import is_lowercased_tokenized, published_split_name
from train.precision import machine_description, native_bf16

__all__ = [
    "TEMPLATE_PATH",
    "PAPER_BIBTEX",
    "KNOWN_DATASETS",
    "DatasetFacts",
    "build_model_card",
    "write_model_card",
    "rewrite_model_card",
]

TEMPLATE_PATH = Path(__file__).with_name("model_card_template.md")

PAPER_BIBTEX = r"""@inproceedings{vaswani2017attention,
  title     = {Attention Is All You Need},
  author    = {Vaswani, Ashish and Shazeer, Noam and Parmar, Niki and Uszkoreit, Jakob and
               Jones, Llion and Gomez, Aidan N. and Kaiser, {\L}ukasz and Polosukhin, Illia},
  booktitle = {Advances in Neural Information Processing Systems 30 (NIPS 2017)},
  pages     = {5998--6008},
  year      = {2017},
  url       = {https://arxiv.org/abs/1706.03762}
}"""

RECURRENT_MODELS = {
    "rnn_encoder_decoder": {
        "model_headline": "an RNN encoder–decoder without attention (Sutskever et al., 2014)",
        "model_description": (
            "The model is the encoder–decoder of *Sequence to Sequence Learning with Neural Networks*, re-implemented "
            "as a 🤗 transformers model (package `hf-vanilla-transformer`): a stacked RNN reads the reversed source "
            "sentence, and its final state, one fixed-size vector per layer, is the decoder's initial state and the "
            "only way the source reaches the decoder. Source and target share a BPE vocabulary and one embedding "
            "matrix, tied to the output layer."
        ),
        "paper_bibtex": r"""@inproceedings{sutskever2014sequence,
  title     = {Sequence to Sequence Learning with Neural Networks},
  author    = {Sutskever, Ilya and Vinyals, Oriol and Le, Quoc V.},
  booktitle = {Advances in Neural Information Processing Systems 27 (NIPS 2014)},
  pages     = {3104--3112},
  year      = {2014},
  url       = {https://arxiv.org/abs/1409.3215}
}""",
    },
    "rnn_search": {
        "model_headline": "RNNsearch, the attention-based RNN encoder–decoder of Bahdanau et al. (2015)",
        "model_description": (
            "The model is RNNsearch of *Neural Machine Translation by Jointly Learning to Align and Translate*, "
            "re-implemented as a 🤗 transformers model (package `hf-vanilla-transformer`): a bidirectional RNN "
            "annotates each source token, and at every step the decoder reads a context vector through additive "
            "attention, v_a^T tanh(W_a s_{i-1} + U_a h_j), and predicts through a maxout layer. Source and target "
            "share a BPE vocabulary and one embedding matrix, tied to the output layer."
        ),
        "paper_bibtex": r"""@inproceedings{bahdanau2015neural,
  title     = {Neural Machine Translation by Jointly Learning to Align and Translate},
  author    = {Bahdanau, Dzmitry and Cho, Kyunghyun and Bengio, Yoshua},
  booktitle = {3rd International Conference on Learning Representations (ICLR 2015)},
  year      = {2015},
  url       = {https://arxiv.org/abs/1409.0473}
}""",
    },
}
"""Card texts of the recurrent models (by config `model_type`); the Transformer's are the template's defaults."""

LANGUAGE_NAMES = {"de": "German", "en": "English", "fr": "French", "cs": "Czech", "zh": "Chinese"}

EXAMPLE_SENTENCES = {
    "de": "Ein Mann fährt mit dem Fahrrad die Straße entlang.",
    "en": "A man is riding a bicycle down the street.",
    "fr": "Un homme fait du vélo dans la rue.",
    "cs": "Muž jede na kole po ulici.",
    "zh": "我们明天去公园吧。",
}

BASE_TAGS = ("translation", "transformer", "vanilla-transformer", "attention-is-all-you-need", "encoder-decoder")

DEFAULT_LIMITATIONS = (
    "Trained on a single, small domain: expect poor translations of text unlike the training data "
    "(long sentences, other registers, names and numbers it has not seen).",
    "A sentence-level model: it translates each input independently and ignores document context.",
    "Like any model trained on web or crowd-sourced text, it can reproduce the biases of its data "
    "(for example gendered defaults when the source language leaves gender open).",
    "BLEU and chrF measure n-gram overlap with one reference; they do not guarantee adequate or fluent "
    "output. Check translations before relying on them.",
)

LOWERCASED_TOKENISED_TEXT = (
    "It reads and writes lowercased, Moses-tokenised text, as it was trained: prepare input as Multi30k's `tok/` "
    'files were made, e.g. with `sacremoses`: `MosesTokenizer(lang="{lang}").tokenize(MosesPunctNormalizer('
    'lang="{lang}").normalize(text.lower()), escape=True, return_str=True)`; its output has no capitals, spaces '
    "around punctuation and `&apos;` / `&quot;` for ' and \" (`MosesDetokenizer` undoes the last two)."
)
"""The first Limitations item of a model trained on `multi30k-lc-tok`."""

# Keys accepted in each entry of `results`.
_RESULT_KEYS = frozenset(
    {
        "bleu",
        "bleu_signature",
        "chrf",
        "chrf_signature",
        "split",
        "dataset_config",
        "dataset_revision",
        "decoding",
        "bleu_variant",
        "tokenisation",
    }
)


@dataclass(frozen=True)
class DatasetFacts:
    """What a card says about a training set: name, description, terms of use and citation."""

    pretty_name: str
    description: str
    license_text: str
    hub_id: str | None = None
    bibtex: str | None = None


MULTI30K_TERMS = (
    "Training data: Multi30k (Elliott et al., 2016). Its repository has no license file; its terms say "
    "the dataset is partially derived from Flickr30K, that use of the images must abide by the Flickr "
    "Terms of Use, and that it is provided for researchers and educators for non-commercial research "
    "and/or educational purposes. Check those terms before any other use of this model."
)

MULTI30K_BIBTEX = r"""@inproceedings{elliott-etal-2016-multi30k,
  title     = {{M}ulti30{K}: Multilingual {E}nglish-{G}erman Image Descriptions},
  author    = {Elliott, Desmond and Frank, Stella and Sima'an, Khalil and Specia, Lucia},
  booktitle = {Proceedings of the 5th Workshop on Vision and Language},
  pages     = {70--74},
  year      = {2016},
  doi       = {10.18653/v1/W16-3210}
}"""


KNOWN_DATASETS: dict[str, DatasetFacts] = {
    "multi30k": DatasetFacts(
        pretty_name="Multi30k",
        description=(
            "[Multi30k](https://github.com/multi30k/dataset) (WMT 2016 multimodal translation, task 1): "
            "29,000 training, 1,014 validation and 1,000 test (`test_2016_flickr`) image descriptions, "
            "each with human translations into German, French and Czech. The raw (untokenised) text was used."
        ),
        license_text=MULTI30K_TERMS,
        hub_id="bentrevett/multi30k",
        bibtex=MULTI30K_BIBTEX,
    ),
    "multi30k-lc-tok": DatasetFacts(
        pretty_name="Multi30k (lowercased, tokenised)",
        description=(
            "[Multi30k](https://github.com/multi30k/dataset) (WMT 2016 multimodal translation, task 1): "
            "29,000 training, 1,014 validation and 1,000 test (`test_2016_flickr`) image descriptions, "
            "each with human translations into German, French and Czech. The upstream lowercased, "
            "punctuation-normalised, Moses-tokenised text (`data/task1/tok/*.lc.norm.tok.*`) was used, as most "
            "published Multi30k systems use it: the model reads and writes such text (lowercase, "
            "punctuation split off, `&apos;` / `&quot;` for ' and \")."
        ),
        license_text=MULTI30K_TERMS,
        bibtex=MULTI30K_BIBTEX,
    ),
    "tatoeba-cmn-eng": DatasetFacts(
        pretty_name="Tatoeba English–Chinese (cmn-eng)",
        description=(
            "English–Mandarin Chinese sentence pairs from the [Tatoeba Project](https://tatoeba.org), in the "
            "bilingual export of [manythings.org/anki](https://www.manythings.org/anki/) (`cmn-eng`): short, "
            "everyday sentences written or proofread by native speakers."
        ),
        license_text=(
            "Training data: Tatoeba sentences, CC BY 2.0 France. Attribution: www.manythings.org/anki and "
            "tatoeba.org (per-sentence credits are in the `all.tsv` of the export). Redistribution of the data "
            "or of material derived from it must keep this attribution."
        ),
    ),
}


# ---------------------------------------------------------------------------------------------


def build_model_card(
    *,
    repo_id: str,
    src_lang: str,
    tgt_lang: str,
    dataset_name: str,
    dataset_id: str | None = None,
    results: Mapping[str, Mapping[str, Any]],
    hyperparameters: Mapping[str, Any],
    base_model: str | None = None,
    license: str = "apache-2.0",  # noqa: A002 - the Hub's metadata key
    model_name: str | None = None,
    model_config: Any = None,
    generation_config: Any = None,
    training_summary: str | None = None,
    dataset_description: str | None = None,
    dataset_license_text: str | None = None,
    example_source: str | None = None,
    limitations: Sequence[str] = DEFAULT_LIMITATIONS,
    tags: Sequence[str] = (),
    template_path: str | Path | None = None,
) -> ModelCard:
    """A model card for a translation checkpoint of this project.

    Args:
        repo_id: the Hub repo the card describes (used in the usage snippet).
        src_lang / tgt_lang: ISO 639-1 codes of the source and target languages.
        dataset_name: pretty name of the training set; a key of `KNOWN_DATASETS` ("multi30k",
            "tatoeba-cmn-eng") also fills its description, terms of use, citation and Hub id.
        dataset_id: the dataset's Hub id (metadata `datasets`, model-index `dataset.type`).
        results: `{test set name: entry}`, each entry with `bleu` + `bleu_signature` and optionally
            `chrf` + `chrf_signature` (sacreBLEU `metric.get_signature()`), `split` (defaults to the
            name), `decoding` (e.g. "beam 4, α 0.6"), `bleu_variant`, `tokenisation` (defaults to the
            signature's `tok:`), `dataset_config`, `dataset_revision`.
        hyperparameters: training settings, rendered as a table in insertion order.
        base_model: Hub id of the model this one was fine-tuned from.
        license: Hub license id of the model.
        model_name: name in the card title and the model-index (default: the repo name).
        model_config: a `VanillaTransformerConfig` (or dict) whose architecture fields are listed.
        generation_config: the model's `GenerationConfig` (or dict); the card states its decoding
            defaults. Without it the card only points to `generation_config.json`.
        training_summary / dataset_description / dataset_license_text: free text overriding defaults.
        example_source: source sentence of the usage snippet (default: one per source language).
        limitations: bullet points of the Limitations section.
        tags: extra Hub tags.
        template_path: another Jinja template (default: `model_card_template.md` beside this file).

    Raises:
        ValueError: on malformed results, unknown languages without an example, or empty names.
    """
    if "/" not in repo_id:
        raise ValueError(f"repo_id must be 'namespace/name', got {repo_id!r}")
    for code in (src_lang, tgt_lang):
        if not re.fullmatch(r"[a-z]{2,3}", code):
            raise ValueError(f"languages must be ISO 639 codes such as 'de', got {code!r}")
    facts = KNOWN_DATASETS.get(dataset_name.lower())
    dataset_id = dataset_id or (facts.hub_id if facts else None)
    pretty_dataset = facts.pretty_name if facts else dataset_name
    model_name = model_name or repo_id.split("/")[-1]
    rows = [_result_row(name, entry) for name, entry in results.items()]

    card_data = ModelCardData(
        language=[src_lang, tgt_lang],
        license=license,
        library_name="transformers",
        pipeline_tag="translation",
        tags=[*BASE_TAGS, f"{src_lang}-{tgt_lang}", *tags],
        datasets=[dataset_id] if dataset_id else None,
        metrics=["bleu", "chrf"] if rows else None,
        base_model=base_model,
        model_name=model_name if rows else None,  # only needed (and kept) for the model-index
        eval_results=_eval_results(rows, src_lang, tgt_lang, pretty_dataset, dataset_id) or None,
    )
    if base_model:
        card_data["base_model_relation"] = "finetune"

    return ModelCard.from_template(
        card_data,
        template_path=str(template_path or TEMPLATE_PATH),
        model_name=model_name,
        repo_id_literal=_py_literal(repo_id),
        example_literal=_py_literal(example_source or _default_example(src_lang)),
        src_lang_name=LANGUAGE_NAMES.get(src_lang, src_lang),
        tgt_lang_name=LANGUAGE_NAMES.get(tgt_lang, tgt_lang),
        dataset_name=pretty_dataset,
        dataset_id=dataset_id,
        dataset_description=dataset_description or (facts.description if facts else pretty_dataset + "."),
        dataset_license_text=dataset_license_text
        or (facts.license_text if facts else f"Training data: {pretty_dataset}; see its license and terms of use."),
        dataset_bibtex=facts.bibtex if facts else None,
        base_model=base_model,
        base_model_url=f"https://huggingface.co/{base_model}" if base_model else None,
        architecture=_architecture(model_config),
        decoding=_decoding(generation_config),
        training_summary=training_summary or _default_training_summary(base_model),
        hyperparameters=[(key, _format_value(value)) for key, value in hyperparameters.items()],
        results=rows,
        limitations=list(limitations),
        license=license,
        **{"paper_bibtex": PAPER_BIBTEX, **_recurrent_model_texts(model_config)},
    )


def _recurrent_model_texts(config: Any) -> dict[str, str]:
    """Headline, description and citation of a recurrent model's card; none for the Transformer."""
    if config is None:
        return {}
    values = config if isinstance(config, Mapping) else config.to_dict()
    return RECURRENT_MODELS.get(values.get("model_type"), {})


# ---- helpers ---------------------------------------------------------------------------------


def _py_literal(text: str) -> str:
    """A double-quoted Python string literal that keeps non-ASCII text readable."""
    return json.dumps(text, ensure_ascii=False)


def _default_example(src_lang: str) -> str:
    if src_lang not in EXAMPLE_SENTENCES:
        raise ValueError(f"no default example sentence for {src_lang!r}: pass example_source=")
    return EXAMPLE_SENTENCES[src_lang]


def _default_training_summary(base_model: str | None) -> str:
    start = f"Fine-tuned from `{base_model}`" if base_model else "Trained from scratch"
    return (
        f"{start} with this project's implementation of the paper's recipe (§5: Adam with the inverse "
        "square-root learning-rate schedule after a linear warm-up, dropout, label smoothing)."
    )


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_value(v) for v in value)
    return str(value)


def parse_signature(signature: str) -> dict[str, str]:
    """`"nrefs:1|case:mixed|tok:13a|..."` -> `{"nrefs": "1", "case": "mixed", "tok": "13a", ...}`."""
    fields = {}
    for part in signature.split("|"):
        key, sep, value = part.partition(":")
        if not sep or not key:
            raise ValueError(f"not a sacreBLEU signature: {signature!r}")
        fields[key.strip()] = value.strip()
    return fields


def _result_row(name: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the results table, validated."""
    unknown = set(entry) - _RESULT_KEYS
    if unknown:
        raise ValueError(f"results[{name!r}]: unknown keys {sorted(unknown)}; expected some of {sorted(_RESULT_KEYS)}")
    if not isinstance(entry.get("bleu"), (int, float)) or not isinstance(entry.get("bleu_signature"), str):
        raise ValueError(f"results[{name!r}] needs a numeric 'bleu' and its sacreBLEU 'bleu_signature'")
    has_chrf = entry.get("chrf") is not None
    if has_chrf and (not isinstance(entry["chrf"], (int, float)) or not isinstance(entry.get("chrf_signature"), str)):
        raise ValueError(f"results[{name!r}]: 'chrf' must be a number with its 'chrf_signature'")
    bleu_sig = parse_signature(entry["bleu_signature"])
    if has_chrf:
        parse_signature(entry["chrf_signature"])
    case = "case-sensitive" if bleu_sig.get("case", "mixed") == "mixed" else "lowercased"
    return {
        "name": name,
        "split": entry.get("split", name),
        "bleu": round(float(entry["bleu"]), 2),
        "chrf": round(float(entry["chrf"]), 2) if has_chrf else "–",
        "bleu_signature": entry["bleu_signature"],
        "chrf_signature": entry.get("chrf_signature") if has_chrf else None,
        "tokenisation": entry.get("tokenisation") or f"sacreBLEU `{bleu_sig.get('tok', '13a')}`",
        "bleu_variant": entry.get("bleu_variant") or f"sacreBLEU corpus BLEU, detokenised, {case}",
        "decoding": entry.get("decoding", "generation_config.json defaults"),
        "dataset_config": entry.get("dataset_config"),
        "dataset_revision": entry.get("dataset_revision"),
    }


def _eval_results(
    rows: Sequence[Mapping[str, Any]], src: str, tgt: str, dataset_name: str, dataset_id: str | None
) -> list[EvalResult]:
    """Two `EvalResult`s (BLEU, chrF) per results row, for the card's `model-index`."""
    dataset_type = dataset_id or re.sub(r"[^a-z0-9]+", "-", dataset_name.lower()).strip("-")
    evals = []
    for row in rows:
        common = dict(
            task_type="translation",
            task_name=f"Translation {src}-{tgt}",
            dataset_type=dataset_type,
            dataset_name=f"{dataset_name} ({row['name']})",
            dataset_split=row["split"],
            dataset_config=row["dataset_config"],
            dataset_revision=row["dataset_revision"],
        )
        evals.append(
            EvalResult(
                **common,
                metric_type="bleu",
                metric_name="BLEU",
                metric_value=row["bleu"],
                metric_config=row["bleu_signature"],
            )
        )
        if row["chrf_signature"]:
            evals.append(
                EvalResult(
                    **common,
                    metric_type="chrf",
                    metric_name="chrF",
                    metric_value=row["chrf"],
                    metric_config=row["chrf_signature"],
                )
            )
    return evals


LENGTH_PENALTY_FORMS = {
    "gnmt": "GNMT's ((5 + length) / 6)^α, as in the paper",
    "hf": "transformers' length^α",
}


def _decoding(generation_config: Any) -> dict[str, Any] | None:
    """What the card says about the default decoding, from a generation config object or dict."""
    if generation_config is None:
        return None
    values = generation_config if isinstance(generation_config, Mapping) else generation_config.to_dict()
    beams = values.get("num_beams") or 1
    form = values.get("length_penalty_form", "gnmt")
    return {
        "search": f"beam search with {beams} beams" if beams > 1 else "greedy decoding",
        "length_penalty": _format_value(values.get("length_penalty", 1.0)) if beams > 1 else None,
        "length_penalty_form": LENGTH_PENALTY_FORMS.get(form, form),
        "max_new_tokens": values.get("max_new_tokens"),
        "max_new_tokens_over_input": values.get("max_new_tokens_over_input"),
    }


_ARCHITECTURE_FIELDS = (
    ("d_model", "d_model"),
    ("encoder_layers", "encoder layers (N)"),
    ("decoder_layers", "decoder layers (N)"),
    ("encoder_attention_heads", "attention heads (h)"),
    ("encoder_ffn_dim", "feed-forward size (d_ff)"),
    ("vocab_size", "shared vocabulary"),
    ("position_embedding_type", "position encoding"),
    ("layer_norm_position", "layer norm"),
    ("dropout", "dropout (P_drop)"),
    ("cell_type", "RNN cell"),
    ("embedding_size", "embedding size"),
    ("hidden_size", "hidden units per layer"),
    ("attention_size", "alignment model size (n')"),
    ("reverse_source", "reversed source"),
)


def _architecture(config: Any) -> list[tuple[str, str]]:
    """(label, value) rows for the architecture table, from a config object or dict."""
    if config is None:
        return []
    values = config if isinstance(config, Mapping) else config.to_dict()
    return [(label, _format_value(values[key])) for key, label in _ARCHITECTURE_FIELDS if key in values]


# ---- the card of a training run ----------------------------------------------------------------


def card_results(cfg: TrainConfig, test: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The `results` of `build_model_card` from the run's test results (`train.evaluate_model`)."""
    if not test:
        return {}
    name = published_split_name(cfg.dataset, cfg.test_split)
    entry = {key: test[key] for key in ("bleu", "bleu_signature", "chrf", "chrf_signature")}
    entry.update(
        split=cfg.test_split,
        decoding=f"beam {test['num_beams']}, length penalty {test['length_penalty']} ({test['length_penalty_form']})",
        bleu_variant="sacreBLEU on detokenised, cased output"
        + (", characters as words (`zh` tokenizer)" if "tok:zh" in test["bleu_signature"] else ""),
    )
    pretokenized = is_lowercased_tokenized(cfg.dataset)
    if pretokenized:  # output and references are lowercased, tokenised text: no cased score exists
        entry["bleu_variant"] = (
            "sacreBLEU (`13a`) on the model's lowercased, tokenised output against the `tok/` references"
        )
    results = {name: entry}
    if "bleu_tok_lc" in test:  # Multi30k: also the published papers' convention (train.evaluate)
        results[f"{name}, lowercased and tokenised"] = dict(
            split=cfg.test_split,
            bleu=test["bleu_tok_lc"],
            bleu_signature=test["bleu_tok_lc_signature"],
            decoding=entry["decoding"],
            tokenisation="none: the model outputs lowercased, Moses-tokenised text"
            if pretokenized
            else "Moses (sacremoses), lowercased, punctuation normalised",
            bleu_variant="lowercased, Moses-tokenised output against the `tok/` references, as Multi30k papers report",
        )
    return results


def hyperparameters(
    cfg: TrainConfig,
    state: Any = None,
    machine: Mapping[str, Any] | None = None,
    precision: str | None = None,
    final_weights: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The training settings shown in the card, in display order. `machine` (as
    `train.precision.machine_description` gives it) and `precision` (`"fp32"` or `"bf16"`) are those the
    run trained with: by default this machine's and what `cfg.precision` picks on it. `final_weights`: the
    run's choice between averaged checkpoints and the EMA (`train.ema.choose_final_weights`), if it kept one."""
    width = "d_model" if cfg.model_type == "vanilla-transformer" else "hidden_size"  # train.train.model_width
    values = {
        "preset": cfg.preset if not cfg.init_from else f"fine-tuned from {cfg.init_from}",
        "model overrides": cfg.model or "none",
        "shared BPE vocabulary": cfg.vocab_size if not (cfg.tokenizer or cfg.init_from) else "reused",
        "tokens per batch (per side)": cfg.max_tokens * cfg.gradient_accumulation_steps,
        "optimizer": f"Adam β1={cfg.adam_beta1}, β2={cfg.adam_beta2}, ε={cfg.adam_epsilon}",
        "learning rate": f"{cfg.lr_factor} · {width}^-0.5 · min(step^-0.5, step · {cfg.warmup_steps}^-1.5)",
        "label smoothing": cfg.label_smoothing,
        "training steps": state.global_step if state is not None else cfg.max_steps,
        "training time budget": training_budget_text(cfg),
        "checkpoints averaged": cfg.average_last,
        "seed": cfg.seed,
    }
    if cfg.ema_decay is not None:
        values["final weights"] = final_weights_text(cfg, final_weights)
    if cfg.bpe_dropout:
        values["BPE-dropout"] = f"{cfg.bpe_dropout:g} on training pairs, both sides, new segmentations every epoch"
    if cfg.init_embeddings:
        vectors = (
            "skip-gram vectors of the training text (gensim)"
            if cfg.init_embeddings == "word2vec"
            else f"word vectors {cfg.init_embeddings}"
        )
        values["embedding initialisation"] = f"{vectors}, rescaled to std d_model^-0.5"
    if cfg.tunes_decoding:
        beams = ", ".join(str(k) for k in cfg.tune_num_beams) if cfg.tune_num_beams else "the default"
        alphas = ", ".join(f"{a:g}" for a in cfg.tune_length_penalties) if cfg.tune_length_penalties else "the default"
        values["decoding chosen on validation"] = (
            f"beam {beams} × length penalty {alphas}, best BLEU on {cfg.eval_split}"
        )
    if state is not None and state.epoch is not None:
        values["epochs"] = round(state.epoch, 2)
    machine = machine or machine_description()  # by default the card is written by the run, on the machine that trained
    if precision is None:
        precision = "bf16" if cfg.precision == "bf16" or (cfg.precision == "auto" and native_bf16()) else "fp32"
    values["precision"] = f"{cfg.precision}: " + ("bf16 autocast, fp32 weights" if precision == "bf16" else "fp32")
    threads = machine["torch_threads"]
    values["hardware"] = (
        f"{machine['cpu']} CPU ({', '.join(machine['cpu_flags'])}), {threads} thread{'s' * (threads != 1)}; "
        f"torch {machine['torch']}, transformers {machine['transformers']}"
    )
    return values


def training_budget_text(cfg: TrainConfig) -> str:
    """`12 minutes`, `12 minutes, less if the whole run would take more than 15` (`max_total_minutes`), or `none`."""
    if not cfg.max_train_minutes:
        return "none"
    text = f"{cfg.max_train_minutes} minutes"
    if cfg.max_total_minutes is not None:
        text += f", less if the whole run would take more than {cfg.max_total_minutes}"
    return text


def final_weights_text(cfg: TrainConfig, final_weights: Mapping[str, Any] | None) -> str:
    """What the card says of the final weights of a run that kept an EMA: the last checkpoints averaged (§6.1)
    or the EMA, and how they were chosen (`final_weights`, as `train.ema.choose_final_weights` returns it)."""
    names = {
        "average": f"the last {cfg.average_last} checkpoints averaged (§6.1)",
        "ema": f"an exponential moving average of the weights (decay {cfg.ema_decay:g})",
    }
    if final_weights is None:
        return f"{names['average']}, or {names['ema']}, as final_weights={cfg.final_weights} chooses"
    chosen = final_weights["chosen"]
    other = "average" if chosen == "ema" else "ema"
    text = names[chosen]
    scores = final_weights.get("validation_bleu")
    if scores:
        text += f"; chosen on {cfg.eval_split} over {names[other]}: BLEU {scores[chosen]:.2f}, {scores[other]:.2f}"
    return text


def write_model_card(
    cfg: TrainConfig,
    model: Any,
    model_dir: str | Path,
    test: Mapping[str, Any] | None,
    state: Any = None,
    machine: Mapping[str, Any] | None = None,
    precision: str | None = None,
    final_weights: Mapping[str, Any] | None = None,
) -> Path:
    """Build the card of a training run's final `model` (saved in `model_dir`) and save it there as
    `README.md`. `test`: the run's test results, `state`: the Trainer's state; `machine`, `precision` and
    `final_weights` as in `hyperparameters`."""
    model_dir = Path(model_dir)
    repo_id = cfg.push_to_hub or f"your-username/{Path(cfg.output_dir).name}"
    dataset_name = "tatoeba-cmn-eng" if "tatoeba" in cfg.dataset else cfg.dataset
    text_options = {}
    if is_lowercased_tokenized(cfg.dataset):  # it reads and writes Multi30k's tok/ text: say so, show such input
        example = _default_example(cfg.src_lang)
        text_options = dict(
            example_source=f"{example[:-1].lower()} {example[-1]}",  # lowercased, the full stop split off
            limitations=(LOWERCASED_TOKENISED_TEXT.format(lang=cfg.src_lang), *DEFAULT_LIMITATIONS),
        )
    card = build_model_card(
        repo_id=repo_id,
        src_lang=cfg.src_lang,
        tgt_lang=cfg.tgt_lang,
        dataset_name=dataset_name,
        results=card_results(cfg, test),
        hyperparameters=hyperparameters(cfg, state, machine, precision, final_weights),
        base_model=cfg.init_from
        if cfg.init_from and "/" in cfg.init_from and not Path(cfg.init_from).exists()
        else None,
        model_config=model.config,
        generation_config=model.generation_config,
        **text_options,
    )
    path = model_dir / "README.md"
    card.save(path)
    return path


def rewrite_model_card(run_dir: str | Path) -> Path:
    """Build a finished run's card again with the current card code, from what the run saved: its
    `train_config.json`, its `summary.json` (steps, epochs, test results, the machine and precision it
    trained with) and its model folder. Nothing is trained or scored again; returns the card's path."""
    from train.model_folder import load_model  # loads torch and transformers: only here

    run_dir = Path(run_dir)
    missing = [name for name in ("train_config.json", "summary.json", "model") if not (run_dir / name).exists()]
    if missing:
        raise FileNotFoundError(f"{run_dir} is not a finished run: {', '.join(missing)} missing")
    cfg = TrainConfig.from_dict(json.loads((run_dir / "train_config.json").read_text(encoding="utf-8")))
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    model, _ = load_model(run_dir / "model")
    state = SimpleNamespace(global_step=summary["steps"], epoch=summary.get("epochs"))
    return write_model_card(
        cfg,
        model,
        run_dir / "model",
        summary.get("test"),
        state,
        summary.get("machine"),
        summary.get("precision"),
        summary.get("final_weights"),
    )
