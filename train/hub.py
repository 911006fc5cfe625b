"""Push a trained model folder (weights, tokenizer, code, card) to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi


def push_model_folder(
    model_dir: str | Path, repo_id: str, private: bool = False, commit_message: str | None = None
) -> str:
    """Create `repo_id` if needed and upload `model_dir` as one commit; returns the commit URL.

    The folder is what `save_pretrained` wrote (config with `auto_map` and `custom_pipelines`,
    safetensors, generation config, tokenizer, the model's `.py` files) plus the card README.md,
    so that `from_pretrained(repo_id, trust_remote_code=True)` works without this package.
    """
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a model folder (no config.json)")
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(model_dir),
        commit_message=commit_message or f"Upload {model_dir.name} (hf-vanilla-transformer)",
    )
    return str(info.commit_url)
