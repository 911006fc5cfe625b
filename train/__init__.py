"""Training library for the vanilla Transformer (Vaswani et al., 2017, §5 "Training").

One module per concept; the command-line scripts (`train.train`, `train.recipe`,
`train.translate`, `train.evaluate_model`, `train.train_tokenizer`, `train.average_checkpoints`)
are thin wrappers over these:

- `train.config`: the training settings (`TrainConfig`), from YAML plus overrides, checked.
- `train.data`: every data source (Multi30k, folders, TSV, JSON lines, Hub ids), validated;
  tokenization and length filtering (§5.1).
- `train.lines`: one sentence per line: reading (UTF-8, `\\n` only) and writing (whole or not at all).
- `train.batching`: token-budget batches of sentence pairs of similar length (§5.1).
- `train.trainer`: a `Seq2SeqTrainer` that trains on those batches, with label smoothing (§5.4).
- `train.schedule`: the warm-up / inverse-square-root learning rate (§5.3) as the Trainer runs it.
- `train.callbacks`: the metrics log, the time budget and its progress bar, the training curves.
- `train.average_checkpoints`: average the last checkpoints of a run (§6.1).
- `train.model_folder`: load a trained model folder, checked (files named, weights matching).
- `train.evaluate`: sacreBLEU BLEU and chrF (§6.1).
- `train.model_card`: the model card of a trained model.
- `train.hub`: push a model folder to the Hugging Face Hub.

Submodules are imported on demand, so `import train` stays cheap.
"""
