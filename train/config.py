"""Training run configuration: a YAML file (see `train/configs/`) plus `key=value` overrides.

Every field has the paper's value (§5) or a documented choice for CPU-sized runs as its default.
Unknown keys and wrongly typed values are rejected with an error naming them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class TrainConfig:
    # ------------------------------------------------------------------ data
    dataset: str = "multi30k"
    """`multi30k` (local copy if found, else the Hub), a folder of `{split}.{lang}` files, a TSV or
    JSON-lines file, or a Hub dataset id."""
    src_lang: str = "de"
    tgt_lang: str = "en"
    data_dir: str | None = None
    """Folder of the local Multi30k copy (default: $HVT_MULTI30K_DIR or ../shared/data/multi30k)."""
    train_split: str = "train"
    eval_split: str = "validation"
    test_split: str | None = "test"
    """Split for the final beam-search evaluation (None: skip it)."""
    max_source_length: int = 128
    """Training pairs with more BPE tokens than this on either side are dropped (and counted)."""
    max_target_length: int = 128
    max_eval_samples: int | None = None
    """Validate on the first N validation pairs only (None: all)."""

    # ------------------------------------------------------------------ tokenizer (§5.1)
    tokenizer: str | None = None
    """An existing tokenizer folder; None trains a shared BPE on the training text."""
    vocab_size: int = 8000
    bpe_dropout: float = 0.0
    """Not in the paper: BPE-dropout (Provilkov et al., 2020) on the training pairs, both sides: each epoch
    segments every pair anew, dropping each candidate merge with this probability (`train.bpe_dropout`; the
    paper's 0.1). Validation, test and translation use the plain segmentation. 0: plain BPE throughout."""

    # ------------------------------------------------------------------ model (§3, Table 3)
    model_type: str = "vanilla-transformer"
    """`vanilla-transformer` (Vaswani et al. 2017), `rnn-encoder-decoder` (no attention, Sutskever et al.
    2014) or `rnn-search` (additive attention, Bahdanau et al. 2015): `MODEL_TYPES`."""
    preset: str = "small"
    """A preset of the model type's config: `tiny`, `small`, `base` or `big` for the Transformer; `tiny`,
    `small` or `paper` for the recurrent models."""
    model: dict[str, Any] = field(default_factory=dict)
    """Overrides of the model type's config fields, e.g. {dropout: 0.3, encoder_layers: 4}. With
    `init_from` only regularisation may change (`FINE_TUNING_OVERRIDES`: the dropouts)."""
    init_from: str | None = None
    """Fine-tune: a trained model folder to start from (its tokenizer is kept; its config must
    match its weights)."""
    init_embeddings: str | None = None
    """Word vectors to start the shared embedding from (§3.4), rescaled to the random init's std
    d_model^-0.5 (`train.init_embeddings`): `word2vec` trains skip-gram vectors of the training text
    with the run's tokenizer as the run starts (about 20 seconds on Multi30k), or a file of `python -m
    explain.word2vec` made with this run's tokenizer (set `tokenizer:` to its folder). None: the random init."""

    # ------------------------------------------------------------------ optimisation (§5.3, §5.4)
    max_tokens: int = 4096
    """Token budget of a batch per side (fairseq's --max-tokens); the paper used 25000 per GPU batch."""
    gradient_accumulation_steps: int = 1
    lr_factor: float = 1.0
    """lrate = lr_factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)   (§5.3 has factor 1)."""
    warmup_steps: int = 4000
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-9
    label_smoothing: float = 0.1
    """epsilon_ls of the training and validation loss (§5.4), given to the model's forward."""
    max_grad_norm: float | None = None
    """Gradient clipping (not in the paper; None disables it)."""
    max_steps: int = 100000
    """Training steps (the base model trained 100k steps, §5.2)."""
    max_train_minutes: float | None = None
    """Stop training after this many minutes of wall-clock time (a checkpoint is saved there);
    the learning-rate schedule depends on it only through `cooldown_fraction`. None: train for max_steps."""
    max_total_minutes: float | None = None
    """Not in the paper: the whole run (preparation, training, averaging, the decoding grid, the test) ends within
    this many minutes of wall-clock time, counted from `$HVT_RUN_STARTED` (Unix seconds; `make recipe` sets it
    before it builds `.venv`) or else from the start of `train.train`. Training then stops before
    `max_train_minutes` when the time left would not hold the work after it, timed at each validation
    (`train.time_budget.after_training_timer`). Needs `max_train_minutes`. None: no total budget."""
    cooldown_fraction: float = 0.0
    """Not in the paper: over the last `cooldown_fraction` of training (of the time budget, else of
    max_steps) the learning rate falls linearly to 0, on top of §5.3's curve, so that a budgeted run
    ends annealed (`train.schedule.cooldown_factor`). 0: §5.3's curve to the end."""
    num_threads: int | None = None
    """torch intra-op threads (None: torch's default)."""
    precision: str = "auto"
    """`auto` (bf16 autocast on CPUs with native bf16, else fp32; `train.precision`), `fp32` or `bf16`."""

    # ------------------------------------------------------------------ validation, checkpoints
    eval_steps: int = 1000
    save_steps: int = 1000
    keep_checkpoints: int = 5
    """Checkpoints kept besides the best one; the last `average_last` are averaged (§6.1)."""
    average_last: int = 5
    ema_decay: float | None = None
    """Not in the paper: also keep an exponential moving average of the weights with this decay per step
    (`train.ema`; it spans about 1 / (1 - decay) steps), saved in each checkpoint and as `model-ema/`."""
    final_weights: str = "average"
    """Which weights become `model/`: `average` (the last `average_last` checkpoints, §6.1), `ema` or
    `validation` (the one of the two with the higher BLEU on `eval_split`); the last two need `ema_decay`."""
    eval_num_beams: int = 1
    """Beam size of the BLEU computed during training (greedy by default, for speed)."""
    test_num_beams: int | None = None
    """Beam size of the final test evaluation; None: the model's generation config (§6.1: 4)."""
    length_penalty: float | None = None
    """Length penalty alpha of the final test evaluation; None: the model's generation config (§6.1: 0.6)."""
    tune_num_beams: list[int] | None = None
    """Beam sizes to try on the validation split after training (`train.tune_decoding`); the best, with the
    best of `tune_length_penalties`, becomes the model's decoding and decodes the test split. None: no tuning."""
    tune_length_penalties: list[float] | None = None
    """Length penalties (alpha) to try with each of `tune_num_beams` (None: only the generation config's)."""
    early_stopping_patience: int | None = None
    """Stop after this many validations without BLEU improvement (None: never)."""

    # ------------------------------------------------------------------ run
    output_dir: str = "runs/multi30k-de-en"
    seed: int = 1
    logging_steps: int = 50
    push_to_hub: str | None = None
    """A Hub repo id to push the final model, tokenizer and card to."""
    report_to: str = "none"

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
        """Read a YAML file (optional) and apply overrides (`["max_steps=100", "model.dropout=0.3"]` or a dict).

        A file may start from another: `extends: other.yaml` (a path relative to the file) takes that file's
        settings, and the file's own replace them (`model:` entries one by one)."""
        values: dict[str, Any] = _read_settings(Path(path)) if path is not None else {}
        for key, value in _parse_overrides(overrides).items():
            if key.startswith("model."):
                values.setdefault("model", {})
                values["model"] = {**values["model"], key[len("model.") :]: value}
            else:
                values[key] = value
        return cls.from_dict(values, source=str(path) if path else "overrides")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> TrainConfig:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"{source}: unknown setting(s) {unknown}; known settings: {sorted(known)}")
        hints = typing.get_type_hints(cls)
        for key, value in values.items():
            _check_type(key, value, hints[key], source)
        config = cls(**values)
        config.check_values(source)
        return config

    def check_values(self, source: str = "config") -> None:
        """Reject values no run can use (so that they stop the run before it trains, not after)."""
        from train.precision import PRECISIONS

        problems = [f"{name} must be >= 1, got {getattr(self, name)}" for name in POSITIVE if getattr(self, name) < 1]
        problems += [
            f"{name} must be >= 1 or null, got {getattr(self, name)}"
            for name in POSITIVE_OR_NONE
            if getattr(self, name) is not None and getattr(self, name) < 1
        ]
        if not 0.0 <= self.bpe_dropout < 1.0:
            problems.append(f"bpe_dropout must be in [0, 1), got {self.bpe_dropout}")
        if not 0.0 <= self.label_smoothing < 1.0:
            problems.append(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.max_train_minutes is not None and self.max_train_minutes < 0:
            problems.append(f"max_train_minutes must be >= 0 or null, got {self.max_train_minutes}")
        if self.max_total_minutes is not None and self.max_total_minutes <= 0:
            problems.append(f"max_total_minutes must be > 0 or null, got {self.max_total_minutes}")
        if self.max_total_minutes is not None and self.max_train_minutes is None:
            problems.append(
                f"max_total_minutes={self.max_total_minutes} needs max_train_minutes: the training time the run aims "
                "for, which the total budget only shortens when the whole run would not fit (or leave "
                "max_total_minutes unset)"
            )
        if not 0.0 <= self.cooldown_fraction < 1.0:
            problems.append(f"cooldown_fraction must be in [0, 1), got {self.cooldown_fraction}")
        problems += self._tuning_problems()
        problems += self._weights_problems()
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.lr_factor <= 0:
            problems.append(f"lr_factor must be > 0, got {self.lr_factor}")
        if self.model_type not in MODEL_TYPES:
            problems.append(f"model_type must be one of {list(MODEL_TYPES)}, got {self.model_type!r}")
            config_class = None
        else:
            config_class, presets = model_config_class(self.model_type), model_presets(self.model_type)
            if self.preset not in presets:
                problems.append(
                    f"preset must be one of {sorted(presets)}, got {self.preset!r} (model_type {self.model_type})"
                )
        fields = {f.name for f in dataclasses.fields(config_class)} if config_class else set()
        for key in sorted(self.model):
            if key in NOT_MODEL_SETTINGS:
                problems.append(f"model.{key} is {NOT_MODEL_SETTINGS[key]}")
            elif config_class and key not in fields:
                problems.append(f"model.{key} is not a {config_class.__name__} field")
        refused = sorted(set(self.model) - set(FINE_TUNING_OVERRIDES)) if self.init_from else []
        if refused:
            problems.append(
                f"init_from={self.init_from}: cannot change {refused} of a trained model (its weights were trained "
                f"with its own architecture); when fine-tuning, model.* may only set {list(FINE_TUNING_OVERRIDES)}"
            )
        if self.init_embeddings and self.init_from:
            problems.append(
                f"init_embeddings={self.init_embeddings} with init_from={self.init_from}: a model being fine-tuned "
                "keeps its trained embeddings; set one of them"
            )
        if problems:
            raise ValueError(f"{source}: {'; '.join(problems)}")

    def _tuning_problems(self) -> list[str]:
        """What is wrong with the decoding-tuning settings (`tune_num_beams`, `tune_length_penalties`)."""
        problems = []
        if self.tune_num_beams is not None and (not self.tune_num_beams or min(self.tune_num_beams) < 1):
            problems.append(f"tune_num_beams must be a non-empty list of beam sizes >= 1, got {self.tune_num_beams}")
        if self.tune_length_penalties is not None and not self.tune_length_penalties:
            problems.append("tune_length_penalties must be a non-empty list of numbers or null")
        if self.tune_num_beams is not None and self.test_num_beams is not None:
            problems.append("set test_num_beams or tune_num_beams, not both (tuning chooses the test's beam)")
        if self.tune_length_penalties is not None and self.length_penalty is not None:
            problems.append("set length_penalty or tune_length_penalties, not both (tuning chooses the test's alpha)")
        if (self.tune_num_beams or self.tune_length_penalties) and self.eval_split.startswith("test"):
            problems.append(
                f"decoding is tuned on eval_split, which must not be a test split (got {self.eval_split!r})"
            )
        return problems

    def _weights_problems(self) -> list[str]:
        """What is wrong with the final-weights settings (`ema_decay`, `final_weights`)."""
        problems = []
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            problems.append(f"ema_decay must be in (0, 1) or null, got {self.ema_decay}")
        if self.final_weights not in FINAL_WEIGHTS:
            problems.append(f"final_weights must be one of {FINAL_WEIGHTS}, got {self.final_weights!r}")
        elif self.final_weights != "average" and self.ema_decay is None:
            problems.append(f"final_weights={self.final_weights!r} needs ema_decay (the EMA is kept only with it)")
        return problems

    @property
    def tunes_decoding(self) -> bool:
        """Whether the run chooses its beam and length penalty on the validation split after training."""
        return self.tune_num_beams is not None or self.tune_length_penalties is not None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


MODEL_TYPES = {
    "vanilla-transformer": ("VanillaTransformerConfig", "VanillaTransformerForConditionalGeneration"),
    "rnn-encoder-decoder": ("RNNEncoderDecoderConfig", "RNNEncoderDecoderForConditionalGeneration"),
    "rnn-search": ("RNNSearchConfig", "RNNSearchForConditionalGeneration"),
}
"""`model_type:` choices -> the names of their config and model classes in `hf_vanilla_transformer`."""


def model_config_class(model_type: str) -> type:
    """The config class of a `model_type:` choice (`MODEL_TYPES`)."""
    import hf_vanilla_transformer as hvt

    return getattr(hvt, MODEL_TYPES[model_type][0])


def model_presets(model_type: str) -> dict[str, dict]:
    """The presets of a `model_type:` choice (the Transformer's are its config module's `PRESETS`)."""
    from hf_vanilla_transformer.configuration_vanilla_transformer import PRESETS

    return getattr(model_config_class(model_type), "PRESETS", PRESETS)


def model_class(model_type: str) -> type:
    """The model class (with the output layer) of a `model_type:` choice (`MODEL_TYPES`)."""
    import hf_vanilla_transformer as hvt

    return getattr(hvt, MODEL_TYPES[model_type][1])


FINE_TUNING_OVERRIDES = ("dropout", "attention_dropout", "activation_dropout")
"""`model.*` settings allowed with `init_from`: regularisation only, which changes training but not what
the loaded weights mean. Every other field describes the architecture the weights were trained in."""

NOT_MODEL_SETTINGS = {
    "label_smoothing": "a training setting, not a model one: set label_smoothing instead",
    "length_penalty_form": "a decoding setting, in the model's generation_config, not a model one",
}
"""Former model config fields (older folders still have them) and where they live now."""

FINAL_WEIGHTS = ("average", "ema", "validation")
"""`final_weights` choices: which weights become a run's `model/` (`train.ema.choose_final_weights`)."""

POSITIVE = (
    "vocab_size",
    "max_source_length",
    "max_target_length",
    "max_tokens",
    "gradient_accumulation_steps",
    "warmup_steps",
    "max_steps",
    "eval_steps",
    "save_steps",
    "keep_checkpoints",
    "average_last",
    "eval_num_beams",
    "logging_steps",
)
POSITIVE_OR_NONE = ("max_eval_samples", "test_num_beams", "num_threads", "early_stopping_patience")


def _read_settings(path: Path, extended_by: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The settings of a YAML config file, with those of the file it `extends:` under its own."""
    if not path.is_file():
        where = f" (extended by {extended_by[-1]})" if extended_by else ""
        raise FileNotFoundError(f"training config not found: {path}{where}")
    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
    base = loaded.pop("extends", None)
    if base is None:
        return loaded
    if not isinstance(base, str):
        raise ValueError(f"{path}: 'extends' names a config file, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in (*extended_by, path.resolve()):
        raise ValueError(f"{path}: 'extends: {base}' makes a cycle of config files")
    values = _read_settings(base_path, (*extended_by, path.resolve()))
    model = {**(values.get("model") or {}), **(loaded.get("model") or {})}
    values.update(loaded)
    if model:
        values["model"] = model
    return values


def _parse_overrides(overrides: list[str] | dict[str, Any] | None) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed = {}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        parsed[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
    return parsed


def _check_type(key: str, value: Any, hint: Any, source: str) -> None:
    allowed = (
        typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        else (hint,)
    )
    for option in allowed:
        origin = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if origin in (str, bool, dict) and isinstance(value, origin):
            return
        if origin is list and isinstance(value, list):
            (item_hint,) = typing.get_args(option)
            for item in value:
                _check_type(f"{key}[]", item, item_hint, source)
            return
    names = " | ".join(getattr(o, "__name__", str(o)) for o in allowed)
    raise ValueError(f"{source}: setting {key!r} expects {names}, got {value!r}")
