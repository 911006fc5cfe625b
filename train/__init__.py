"""Training library for the vanilla Transformer (Vaswani et al., 2017, §5 "Training").

One module per concept; the command-line scripts are thin wrappers over these functions:

- `train.data`: load and validate parallel corpora, tokenize, filter by length (§5.1).
- `train.batching`: token-budget batches of sentence pairs of similar length (§5.1).
- `train.trainer`: a `Seq2SeqTrainer` that trains on those batches.
- `train.schedule`: the warm-up / inverse-square-root learning rate (§5.3) as the Trainer runs it.
- `train.average_checkpoints`: average the last checkpoints of a run (§6.1).
- `train.evaluate`: sacreBLEU BLEU and chrF (§6.1).

Submodules are imported on demand, so `import train` stays cheap.
"""
