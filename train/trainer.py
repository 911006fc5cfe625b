"""A `Seq2SeqTrainer` that trains on token-budget batches (paper §5.1).

`TokenBudgetSeq2SeqTrainer(..., max_tokens=25000)` replaces the Trainer's fixed number of
sentences per batch (`per_device_train_batch_size`, ignored for training) by batches of pairs of
similar length holding at most `max_tokens` padded tokens per side (`train.batching`). With
`gradient_accumulation_steps=k` and `n` processes an update sees about `k * n * max_tokens`
tokens per side; the paper's 25000 source + 25000 target tokens per step came from 8 GPUs.

How it plugs into `transformers.Trainer` (checked against transformers 5.23 / accelerate 1.15):

- `get_train_dataloader` reads the lengths (`src_len` / `tgt_len` from
  `train.data.tokenize_dataset`, else the lengths of `input_ids` / `labels`) *before* the
  Trainer's column pruning, removes the unused columns as the Trainer does, and builds
  `DataLoader(batch_sampler=...)` with the Trainer's worker, pinning and seeding settings. It is
  then passed through `accelerator.prepare`, which adds device placement.
- Each epoch the Trainer calls `set_epoch(epoch)` on the prepared loader, which forwards it to
  a batch sampler it holds directly (one process). Under several processes `prepare` wraps the
  batch sampler in accelerate's `BatchSamplerShard`, which would shard the already sharded
  batches again and has no `set_epoch`. The wrapper is made a pass-through (as the Trainer does
  for its own `BatchRebalanceSampler`) and given the sampler's `set_epoch`, so the epoch also
  reaches the sampler when resuming mid-epoch (the Trainer then calls `set_epoch` on the
  wrapper's wrapper, accelerate's `SkipBatchSampler`, whose inner sampler is that wrapper).
- Resuming mid-epoch: the Trainer skips the batches already trained on with accelerate's
  `skip_first_batches`, which iterates the batch sampler and drops the first ones; since the
  batches are a deterministic function of the seed and epoch, the resumed run sees exactly the
  batches the uninterrupted run would have.
- Evaluation batches keep `per_device_eval_batch_size` sentences but are ordered longest first
  (`sort_eval_by_length`, single process only), which cuts padding, especially under
  `predict_with_generate`. `predict()` / `get_test_dataloader` keep the dataset order, so
  predictions line up with the input rows.

With `bpe_dropout`, the loader reads an `EpochSegmentedDataset` (`train.bpe_dropout`) whose epoch the batch
sampler's `set_epoch` sets, so batches and segmentations change together, and a resumed run sees both as
the uninterrupted run did.

The seed of the batches (and of BPE-dropout) is `args.data_seed`, else `args.seed`.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Callable
from functools import partial

import datasets
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import Seq2SeqTrainer
from transformers.trainer_utils import seed_worker

from train.batching import LengthSortedSampler, TokenBudgetBatchSampler
from train.bpe_dropout import BpeDropout, EpochSegmentedDataset
from train.data import column_lengths, example_lengths

logger = logging.getLogger(__name__)


class TokenBudgetSeq2SeqTrainer(Seq2SeqTrainer):
    """`Seq2SeqTrainer` whose training batches hold at most `max_tokens` padded tokens per side.

    Args:
        *args, **kwargs: as for `Seq2SeqTrainer`. `train_dataset` must be a `datasets.Dataset`.
        max_tokens: token budget of a training batch per side (fairseq's `--max-tokens`).
        label_smoothing: epsilon_ls of the loss (§5.4 uses 0.1), passed to the model's
            `forward(label_smoothing=...)` for every training and validation loss; 0 is the plain
            negative log-likelihood. A model whose `forward` takes no `label_smoothing` is refused
            unless it is 0 (use `Seq2SeqTrainingArguments.label_smoothing_factor` for such models).
        sort_eval_by_length: order evaluation examples longest first.
        lr_multiplier: `step -> factor` applied on top of the learning-rate schedule the training
            arguments name (e.g. a cool-down over a time budget, `train.schedule.cooldown_factor`).
            None: the schedule as it is.
        bpe_dropout: segment the training pairs anew in every epoch with BPE-dropout
            (`train.bpe_dropout`; needs `src` / `tgt` text columns in `train_dataset`). Batches are cut on the
            lengths of `train_dataset`'s own segmentation. None: the segmentation of `train_dataset`.
    """

    def __init__(
        self,
        *args,
        max_tokens: int,
        label_smoothing: float = 0.0,
        sort_eval_by_length: bool = True,
        lr_multiplier: Callable[[int], float] | None = None,
        bpe_dropout: BpeDropout | None = None,
        **kwargs,
    ) -> None:
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        super().__init__(*args, **kwargs)
        if label_smoothing and "label_smoothing" not in inspect.signature(self.model.forward).parameters:
            raise ValueError(
                f"label_smoothing={label_smoothing}: {type(self.model).__name__}.forward takes no label_smoothing "
                "argument; use Seq2SeqTrainingArguments.label_smoothing_factor for this model"
            )
        self.max_tokens = max_tokens
        self.label_smoothing = label_smoothing
        self.sort_eval_by_length = sort_eval_by_length
        self.lr_multiplier = lr_multiplier
        self.bpe_dropout = bpe_dropout
        if bpe_dropout is not None:
            missing = {"src", "tgt"} - set(getattr(self.train_dataset, "column_names", []))
            if missing:
                raise ValueError(
                    f"bpe_dropout segments the text of train_dataset, which has no {sorted(missing)} column"
                )
            if self.args.dataloader_num_workers:
                raise ValueError(
                    "bpe_dropout needs dataloader_num_workers=0: the epoch of the segmentations is set in the main "
                    "process, which worker processes would not see"
                )

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The Trainer's scheduler, times `lr_multiplier(step)` when one is given. transformers'
        warm-up schedules (`inverse_sqrt` among them) are `LambdaLR`s; their step functions are
        composed with the multiplier in a new `LambdaLR`, so the logged learning rate is the one used."""
        if self.lr_scheduler is not None or self.lr_multiplier is None:
            return super().create_scheduler(num_training_steps, optimizer)
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if not isinstance(scheduler, LambdaLR):
            raise TypeError(
                f"lr_multiplier needs a LambdaLR schedule; lr_scheduler_type={self.args.lr_scheduler_type!r} "
                f"built a {type(scheduler).__name__}"
            )
        multiplier = self.lr_multiplier
        self.lr_scheduler = LambdaLR(
            scheduler.optimizer, [lambda step, f=f: f(step) * multiplier(step) for f in scheduler.lr_lambdas]
        )
        return self.lr_scheduler

    def compute_loss(self, model, inputs, *args, **kwargs):
        """The model's own loss, label-smoothed with `label_smoothing` (§5.4)."""
        if self.label_smoothing:
            inputs = {**inputs, "label_smoothing": self.label_smoothing}
        return super().compute_loss(model, inputs, *args, **kwargs)

    def get_train_dataloader(self) -> DataLoader:
        """Training loader over token-budget batches (see the module docstring)."""
        if not isinstance(self.train_dataset, datasets.Dataset):
            raise ValueError(
                f"TokenBudgetSeq2SeqTrainer needs a datasets.Dataset as train_dataset, got {type(self.train_dataset)}"
            )
        dataset = self._remove_unused_columns(self.train_dataset, description="Training")
        on_set_epoch = None
        if self.bpe_dropout is not None:
            dataset = EpochSegmentedDataset(
                dataset, self.train_dataset["src"], self.train_dataset["tgt"], self.bpe_dropout, self._data_seed
            )
            on_set_epoch = dataset.set_epoch
        sampler = self.make_batch_sampler(self.train_dataset, on_set_epoch=on_set_epoch)
        logger.info(
            "Token-budget batching: %d batches per epoch and process, max_tokens=%d (per_device_train_batch_size "
            "is not used)",
            len(sampler), self.max_tokens,
        )  # fmt: skip
        dataloader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            persistent_workers=self.args.dataloader_persistent_workers,
            multiprocessing_context=self.args.dataloader_multiprocessing_context,
            prefetch_factor=self.args.dataloader_prefetch_factor,
            in_order=self.args.dataloader_in_order,
            worker_init_fn=partial(
                seed_worker, num_workers=self.args.dataloader_num_workers, rank=self.args.process_index
            ),
        )
        return bypass_batch_sampler_shard(self.accelerator.prepare(dataloader), sampler)

    def make_batch_sampler(
        self, dataset: datasets.Dataset, on_set_epoch: Callable[[int], None] | None = None
    ) -> TokenBudgetBatchSampler:
        """The training batch sampler of this process."""
        src_lengths, tgt_lengths = example_lengths(dataset)
        return TokenBudgetBatchSampler(
            src_lengths,
            tgt_lengths,
            self.max_tokens,
            seed=self._data_seed,
            num_replicas=max(1, self.args.world_size),
            rank=self.args.process_index if self.args.world_size > 1 else 0,
            on_set_epoch=on_set_epoch,
        )

    @property
    def _data_seed(self) -> int:
        """Seed of the batches and of BPE-dropout's segmentations: `data_seed`, else `seed`."""
        return self.args.data_seed if self.args.data_seed is not None else self.args.seed

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None, **gen_kwargs):
        """As Seq2SeqTrainer's, but the model keeps its own generation config: Seq2SeqTrainer fills it with
        transformers' defaults after generating (`max_length: 20`, ...), which checkpoints would then
        save and which makes every later `generate(max_new_tokens=...)` warn."""
        own = copy.deepcopy(self.model.generation_config)
        try:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys, **gen_kwargs)
        finally:
            self.model.generation_config = own

    def _get_eval_sampler(self, eval_dataset: Dataset) -> Sampler | None:
        if (
            self.sort_eval_by_length
            and self.args.world_size <= 1
            and isinstance(eval_dataset, datasets.Dataset)
            and "input_ids" in eval_dataset.column_names
        ):
            return LengthSortedSampler(column_lengths(eval_dataset, "input_ids"))
        return super()._get_eval_sampler(eval_dataset)

    def get_test_dataloader(self, test_dataset: Dataset) -> DataLoader:
        """As `Trainer.get_test_dataloader`, in dataset order whatever `sort_eval_by_length` says."""
        return self._get_dataloader(
            dataset=test_dataset,
            description="test",
            batch_size=self.args.eval_batch_size,
            sampler_fn=super()._get_eval_sampler,
        )


def bypass_batch_sampler_shard(dataloader: DataLoader, sampler: TokenBudgetBatchSampler) -> DataLoader:
    """Undo accelerate's re-sharding of an already rank-aware batch sampler.

    With several processes, `accelerator.prepare` wraps the batch sampler in `BatchSamplerShard`,
    which would hand each process every n-th of *its* batches. Make the wrapper yield all of them,
    and forward `set_epoch` through it (accelerate's `DataLoaderShard.set_epoch` and the
    Trainer's resume path call it on the wrapper). With one process there is no wrapper.
    """
    wrapper = getattr(dataloader, "batch_sampler", None)
    if wrapper is sampler:  # one process: accelerate left the sampler alone
        return dataloader
    # accelerate internals (BatchSamplerShard's fields): check them, so that a change fails here
    # instead of silently training each process on a fraction of its batches.
    if getattr(wrapper, "batch_sampler", None) is not sampler or not all(
        hasattr(wrapper, name) for name in ("num_processes", "process_index")
    ):
        raise RuntimeError(
            f"accelerate wrapped the token-budget batch sampler in {type(wrapper).__name__}, not the "
            "BatchSamplerShard(batch_sampler, num_processes, process_index) this trainer knows how to bypass; "
            "training with several processes would drop or repeat batches. Use one process, or a tested "
            "accelerate release."
        )
    wrapper.num_processes, wrapper.process_index = 1, 0
    wrapper.set_epoch = sampler.set_epoch
    return dataloader
