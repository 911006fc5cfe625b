"""Write the model card (README.md) of a trained model folder from its run's settings and results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import AutoConfig

from hf_vanilla_transformer.model_card import build_model_card
from train.config import TrainConfig

MULTI30K_TEST_NAMES = {"test": "test_2016_flickr", "validation": "val"}


def card_results(cfg: TrainConfig, test: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not test:
        return {}
    name = MULTI30K_TEST_NAMES.get(cfg.test_split, cfg.test_split) if cfg.dataset == "multi30k" else cfg.test_split
    entry = {key: test[key] for key in ("bleu", "bleu_signature", "chrf", "chrf_signature")}
    entry.update(
        split=cfg.test_split,
        decoding=f"beam {test['num_beams']}, length penalty {test['length_penalty']} ({test['length_penalty_form']})",
        bleu_variant="sacreBLEU on detokenised, cased output",
    )
    return {name: entry}


def hyperparameters(cfg: TrainConfig, state: Any = None) -> dict[str, Any]:
    values = {
        "preset": cfg.preset if not cfg.init_from else f"fine-tuned from {cfg.init_from}",
        "model overrides": cfg.model or "none",
        "shared BPE vocabulary": cfg.vocab_size if not (cfg.tokenizer or cfg.init_from) else "reused",
        "tokens per batch (per side)": cfg.max_tokens * cfg.gradient_accumulation_steps,
        "optimizer": f"Adam β1={cfg.adam_beta1}, β2={cfg.adam_beta2}, ε={cfg.adam_epsilon}",
        "learning rate": f"{cfg.lr_factor} · d_model^-0.5 · min(step^-0.5, step · {cfg.warmup_steps}^-1.5)",
        "label smoothing": cfg.label_smoothing,
        "training steps": state.global_step if state is not None else cfg.max_steps,
        "training time budget": f"{cfg.max_train_minutes} minutes" if cfg.max_train_minutes else "none",
        "checkpoints averaged": cfg.average_last,
        "seed": cfg.seed,
    }
    if state is not None and state.epoch is not None:
        values["epochs"] = round(state.epoch, 2)
    return values


def write_model_card(cfg: TrainConfig, model_dir: str | Path, test: dict[str, Any] | None, state: Any = None) -> Path:
    """Build the card with `hf_vanilla_transformer.model_card` and save it as `model_dir/README.md`."""
    model_dir = Path(model_dir)
    repo_id = cfg.push_to_hub or f"your-username/{Path(cfg.output_dir).name}"
    dataset_name = "tatoeba-cmn-eng" if "tatoeba" in cfg.dataset else cfg.dataset
    card = build_model_card(
        repo_id=repo_id,
        src_lang=cfg.src_lang,
        tgt_lang=cfg.tgt_lang,
        dataset_name=dataset_name,
        results=card_results(cfg, test),
        hyperparameters=hyperparameters(cfg, state),
        base_model=cfg.init_from
        if cfg.init_from and "/" in cfg.init_from and not Path(cfg.init_from).exists()
        else None,
        model_config=AutoConfig.from_pretrained(model_dir, trust_remote_code=True),
    )
    path = model_dir / "README.md"
    card.save(path)
    return path
