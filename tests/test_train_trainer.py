"""Tests of `train.trainer.TokenBudgetSeq2SeqTrainer` with a tiny Marian model on 50 synthetic pairs.

A forward pre-hook records every batch the model saw, so the tests check what training really used:
the token budget, each example once per epoch, the sampler's order under `set_epoch`, and resuming
mid-epoch from a checkpoint.
"""

from __future__ import annotations

import random
from pathlib import Path

import datasets
import pytest
import torch
from accelerate.data_loader import prepare_data_loader, skip_first_batches
from datasets import Dataset, DatasetDict
from torch.utils.data import DataLoader
from transformers import DataCollatorForSeq2Seq, MarianConfig, MarianMTModel, Seq2SeqTrainingArguments

from tests._tiny_tokenizer import tiny_tokenizer
from tests.train_helpers import one_thread  # noqa: F401  (autouse fixture: one torch thread)
from train.batching import TokenBudgetBatchSampler
from train.bpe_dropout import BpeDropout
from train.data import example_lengths, filter_by_length, tokenize_dataset
from train.trainer import TokenBudgetSeq2SeqTrainer, bypass_batch_sampler_shard

MAX_TOKENS = 96
WORDS = "the a dog cat man woman runs sits red blue big small park street ball house sleeps plays".split()


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer(WORDS * 5, vocab_size=280)


@pytest.fixture(scope="module")
def train_dataset(tokenizer) -> Dataset:
    """50 distinct pairs of 1 to 16 words; the target is the reversed source."""
    rng = random.Random(0)
    sources = set()
    while len(sources) < 50:
        sources.add(" ".join(rng.choices(WORDS, k=rng.randint(1, 16))))
    src = sorted(sources)
    tgt = [" ".join(reversed(s.split())) for s in src]
    raw = DatasetDict({"train": Dataset.from_dict({"id": list(range(50)), "src": src, "tgt": tgt})})
    train, dropped = filter_by_length(tokenize_dataset(raw, tokenizer)["train"], MAX_TOKENS, MAX_TOKENS)
    assert dropped == 0
    return train


def tiny_model(tokenizer) -> MarianMTModel:
    torch.manual_seed(0)
    config = MarianConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, max_position_embeddings=128,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=0,
    )  # fmt: skip
    return MarianMTModel(config)


def make_trainer(
    tokenizer, train_dataset: Dataset, output_dir: Path, bpe_dropout: BpeDropout | None = None, **arguments
) -> TokenBudgetSeq2SeqTrainer:
    model = tiny_model(tokenizer)
    settings = {"num_train_epochs": 2, "learning_rate": 1e-3, "seed": 7, "save_strategy": "no", **arguments}
    args = Seq2SeqTrainingArguments(
        output_dir=str(output_dir), use_cpu=True, report_to="none", disable_tqdm=True, logging_strategy="no", **settings
    )
    return TokenBudgetSeq2SeqTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=DataCollatorForSeq2Seq(tokenizer, model=model),
        processing_class=tokenizer,
        max_tokens=MAX_TOKENS,
        bpe_dropout=bpe_dropout,
    )


def record_batches(trainer: TokenBudgetSeq2SeqTrainer, train_dataset: Dataset) -> list[dict]:
    """Hook the model; each entry is one forward pass: dataset ids of its rows and tensor shapes."""
    row_of = {tuple(ids): row for row, ids in zip(train_dataset["id"], train_dataset["input_ids"], strict=True)}
    seen: list[dict] = []

    def hook(module, args, kwargs):
        if module.training:
            input_ids, labels = kwargs["input_ids"], kwargs["labels"]
            rows = [
                row_of[tuple(ids[mask.bool()].tolist())]
                for ids, mask in zip(input_ids, kwargs["attention_mask"], strict=True)
            ]
            seen.append({"rows": rows, "src_shape": tuple(input_ids.shape), "tgt_shape": tuple(labels.shape)})

    trainer.model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def test_every_batch_respects_budget_and_each_example_once_per_epoch(tokenizer, train_dataset, tmp_path) -> None:
    trainer = make_trainer(tokenizer, train_dataset, tmp_path)
    seen = record_batches(trainer, train_dataset)
    output = trainer.train()
    assert torch.isfinite(torch.tensor(output.training_loss))

    sampler = trainer.make_batch_sampler(train_dataset)
    per_epoch = len(sampler)
    assert 1 < per_epoch < len(train_dataset) and len(seen) == 2 * per_epoch
    for batch in seen:
        (size, src_len), (_, tgt_len) = batch["src_shape"], batch["tgt_shape"]
        assert size * max(src_len, tgt_len) <= MAX_TOKENS
    for epoch in range(2):
        batches = [batch["rows"] for batch in seen[epoch * per_epoch : (epoch + 1) * per_epoch]]
        assert sorted(row for rows in batches for row in rows) == list(range(len(train_dataset)))
        sampler.set_epoch(epoch)
        assert batches == list(sampler)  # the Trainer called set_epoch(epoch) before each epoch
    assert seen[0]["rows"] != seen[per_epoch]["rows"]


def test_resuming_mid_epoch_replays_the_same_batches(tokenizer, train_dataset, tmp_path) -> None:
    steps_per_epoch = len(TokenBudgetBatchSampler(*example_lengths(train_dataset), MAX_TOKENS))
    save_step = steps_per_epoch + 2  # two updates into the second epoch
    full = make_trainer(tokenizer, train_dataset, tmp_path, save_strategy="steps", save_steps=save_step)
    full_batches = record_batches(full, train_dataset)
    full.train()

    resumed = make_trainer(tokenizer, train_dataset, tmp_path)
    resumed_batches = record_batches(resumed, train_dataset)
    resumed.train(resume_from_checkpoint=str(tmp_path / f"checkpoint-{save_step}"))
    assert len(resumed_batches) == 2 * steps_per_epoch - save_step > 0
    assert [b["rows"] for b in resumed_batches] == [b["rows"] for b in full_batches[save_step:]]


def record_segmentations(trainer: TokenBudgetSeq2SeqTrainer, tokenizer, train_dataset: Dataset) -> list[dict]:
    """Hook the model; each entry is one forward pass: dataset ids of its rows, found by their decoded
    source text (which must be the row's), and the source token ids of each row."""
    row_of = {text: row for row, text in zip(train_dataset["id"], train_dataset["src"], strict=True)}
    seen: list[dict] = []

    def hook(module, args, kwargs):
        if module.training:
            sources = [
                tuple(ids[mask.bool()].tolist())
                for ids, mask in zip(kwargs["input_ids"], kwargs["attention_mask"], strict=True)
            ]
            rows = [row_of[tokenizer.decode(ids, skip_special_tokens=True).strip()] for ids in sources]
            seen.append({"rows": rows, "sources": sources})

    trainer.model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def test_bpe_dropout_segments_every_epoch_anew_in_the_same_batches_and_resumes_exactly(
    tokenizer, train_dataset, tmp_path
) -> None:
    steps_per_epoch = len(TokenBudgetBatchSampler(*example_lengths(train_dataset), MAX_TOKENS))
    save_step = steps_per_epoch + 2  # two updates into the second epoch
    dropout = BpeDropout(tokenizer, 0.3)
    full = make_trainer(tokenizer, train_dataset, tmp_path, dropout, save_strategy="steps", save_steps=save_step)
    seen = record_segmentations(full, tokenizer, train_dataset)
    full.train()
    plain = make_trainer(tokenizer, train_dataset, tmp_path / "plain")
    plain_seen = record_batches(plain, train_dataset)
    plain.train()
    assert [batch["rows"] for batch in seen] == [batch["rows"] for batch in plain_seen]  # the same batches

    plain_sources = {row: tuple(ids) for row, ids in zip(train_dataset["id"], train_dataset["input_ids"], strict=True)}
    epochs = [
        {row: ids for batch in seen[e * steps_per_epoch : (e + 1) * steps_per_epoch] for row, ids in
         zip(batch["rows"], batch["sources"], strict=True)}
        for e in range(2)
    ]  # fmt: skip
    assert sum(epochs[0][row] != plain_sources[row] for row in plain_sources) > 10
    assert sum(epochs[0][row] != epochs[1][row] for row in plain_sources) > 10

    resumed = make_trainer(tokenizer, train_dataset, tmp_path, BpeDropout(tokenizer, 0.3))
    resumed_seen = record_segmentations(resumed, tokenizer, train_dataset)
    resumed.train(resume_from_checkpoint=str(tmp_path / f"checkpoint-{save_step}"))
    assert len(resumed_seen) == 2 * steps_per_epoch - save_step > 0
    assert resumed_seen == seen[save_step:]


def test_bpe_dropout_needs_the_text_and_the_main_process(tokenizer, train_dataset, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"no \['src'\] column"):
        make_trainer(tokenizer, train_dataset.remove_columns("src"), tmp_path, BpeDropout(tokenizer, 0.1))
    with pytest.raises(ValueError, match="dataloader_num_workers=0"):
        make_trainer(tokenizer, train_dataset, tmp_path, BpeDropout(tokenizer, 0.1), dataloader_num_workers=1)


def test_eval_is_sorted_longest_first_and_predict_keeps_order(tokenizer, train_dataset, tmp_path) -> None:
    trainer = make_trainer(tokenizer, train_dataset, tmp_path, per_device_eval_batch_size=8)
    lengths = train_dataset["src_len"]
    eval_batches = list(trainer.get_eval_dataloader(train_dataset))
    eval_lengths = [int(mask.sum()) for batch in eval_batches for mask in batch["attention_mask"]]
    assert eval_lengths == sorted(lengths, reverse=True)
    test_lengths = [
        int(m.sum()) for batch in trainer.get_test_dataloader(train_dataset) for m in batch["attention_mask"]
    ]
    assert test_lengths == list(lengths)


def test_distributed_wrapper_is_bypassed_and_forwards_set_epoch() -> None:
    """Simulates rank 1 of 2 as `accelerator.prepare` sets it up, and the Trainer's epoch calls,
    including the resume path through accelerate's `skip_first_batches`."""
    dataset = datasets.Dataset.from_dict({"x": list(range(40))})
    lengths = [1 + i % 7 for i in range(40)]
    sampler = TokenBudgetBatchSampler(lengths, lengths, 12, num_replicas=2, rank=1)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=lambda rows: [row["x"] for row in rows])
    prepared = bypass_batch_sampler_shard(
        prepare_data_loader(loader, num_processes=2, process_index=1, put_on_device=False), sampler
    )
    prepared.set_epoch(3)  # what Trainer._run_epoch calls
    assert sampler.epoch == 3
    assert list(prepared) == list(sampler)  # not re-sharded by accelerate

    resumed = skip_first_batches(prepared, 1)
    wrapper_of_wrapper = resumed.batch_sampler.batch_sampler  # Trainer: `shard_wrapper.batch_sampler`
    wrapper_of_wrapper.set_epoch(5)
    assert sampler.epoch == 5
    assert list(resumed) == list(sampler)[1:]


def test_rejects_bad_arguments(tokenizer, train_dataset, tmp_path) -> None:
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        TokenBudgetSeq2SeqTrainer(model=tiny_model(tokenizer), max_tokens=0)
    trainer = make_trainer(tokenizer, train_dataset, tmp_path)
    trainer.train_dataset = list(train_dataset)
    with pytest.raises(ValueError, match="needs a datasets.Dataset"):
        trainer.get_train_dataloader()


def test_loss_is_label_smoothed_as_asked(tokenizer, train_dataset, tmp_path) -> None:
    """§5.4: the trainer passes `label_smoothing` to the model's loss, for training and validation."""
    from tests.helpers import tiny_model as tiny_vanilla_model

    model = tiny_vanilla_model(vocab_size=len(tokenizer))
    columns = train_dataset.select_columns(["input_ids", "attention_mask", "labels"])
    inputs = DataCollatorForSeq2Seq(tokenizer, model=model)([columns[i] for i in range(8)])
    logits = model(**inputs).logits
    mask = inputs["labels"] != -100
    assert (~mask).any()  # padded labels are part of the check

    args = Seq2SeqTrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")

    def trainer_loss(label_smoothing: float) -> torch.Tensor:
        trainer = TokenBudgetSeq2SeqTrainer(
            model=model, args=args, max_tokens=MAX_TOKENS, label_smoothing=label_smoothing
        )
        with torch.no_grad():
            return trainer.compute_loss(model, dict(inputs))

    for epsilon in (0.0, 0.1, 0.3):
        expected = torch.nn.functional.cross_entropy(logits[mask], inputs["labels"][mask], label_smoothing=epsilon)
        torch.testing.assert_close(trainer_loss(epsilon), expected, rtol=1e-6, atol=1e-6)
    assert trainer_loss(0.1) > trainer_loss(0.0) + 1e-3

    with pytest.raises(ValueError, match="MarianMTModel.forward takes no label_smoothing argument"):
        TokenBudgetSeq2SeqTrainer(model=tiny_model(tokenizer), args=args, max_tokens=MAX_TOKENS, label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        TokenBudgetSeq2SeqTrainer(model=model, max_tokens=MAX_TOKENS, label_smoothing=1.0)
