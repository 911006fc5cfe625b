"""Baseline for the recipe: what plain Hugging Face tools reach on Multi30k De->En in a time budget.

    python benchmarks/baseline_marian.py --minutes 15 --sampling group_by_length --output runs/baseline-marian

transformers' MarianMTModel of the recipe's size (d_model 256, 3+3 layers, 4 heads, FFN 1024, the
same shared 8k BPE tokenizer), trained with Seq2SeqTrainer (batches of 64 sentences, AdamW 5e-4 with
500 warmup steps and linear decay, label smoothing 0.1), stopped after `--minutes` of training on
this machine, then scored like the recipe: sacreBLEU on test2016, beam 4. Run it on the same
machine as `python -m train.recipe` and compare `results.test.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import DataCollatorForSeq2Seq, MarianConfig, MarianMTModel, Seq2SeqTrainer, Seq2SeqTrainingArguments  # noqa: E402

import hf_vanilla_transformer as hvt  # noqa: E402
from benchmarks.bench_model import small_sizes  # noqa: E402
from train.callbacks import TimeBudgetCallback  # noqa: E402
from train.data import multi30k, tokenize_dataset  # noqa: E402
from train.evaluate import score, write_results  # noqa: E402
from train.translate import translate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=15.0, help="training time budget")
    parser.add_argument("--sampling", choices=["random", "group_by_length"], default="group_by_length")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-steps", type=int, default=1400, help="length of the linear decay")
    parser.add_argument("--output", default="runs/baseline-marian")
    args = parser.parse_args()
    out = Path(args.output)
    start = time.perf_counter()

    raw = multi30k("de", "en")
    tok = hvt.train_tokenizer(texts=list(raw["train"]["src"]) + list(raw["train"]["tgt"]), vocab_size=8000)
    data = tokenize_dataset(raw.__class__({"train": raw["train"]}), tok, cache_dir=out / "cache")["train"]
    data = data.remove_columns([c for c in data.column_names if c not in ("input_ids", "attention_mask", "labels")])
    model = MarianMTModel(
        MarianConfig(
            **small_sizes(len(tok)),  # the recipe's model size (the position table size alone differs)
            dropout=0.1,
            scale_embedding=True,
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.bos_token_id,
            forced_eos_token_id=None,
            bos_token_id=tok.bos_token_id,
        )
    )
    trainer = Seq2SeqTrainer(
        model=model,
        args=Seq2SeqTrainingArguments(
            output_dir=str(out),
            max_steps=args.max_steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=5e-4,
            warmup_steps=500,
            lr_scheduler_type="linear",
            label_smoothing_factor=0.1,
            train_sampling_strategy=args.sampling,
            save_strategy="no",
            logging_steps=50,
            report_to="none",
            use_cpu=True,
            dataloader_pin_memory=False,
            seed=1,
        ),
        train_dataset=data,
        data_collator=DataCollatorForSeq2Seq(tok, model=model),
        processing_class=tok,
        callbacks=[TimeBudgetCallback(args.minutes)],
    )
    trainer.train()
    train_minutes = (time.perf_counter() - start) / 60
    model.eval()
    test = raw["test"]
    hyps = translate(model, tok, test["src"], num_beams=4, length_penalty=1.0, max_new_tokens=100)
    results = {
        "model": "MarianMTModel (transformers), d_model 256, 3+3 layers, FFN 1024, BPE 8k",
        "sampling": args.sampling,
        "batch_size": args.batch_size,
        "steps": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "minutes_until_trained": round(train_minutes, 1),
        "decoding": "beam 4, transformers length penalty 1.0",
        **score(hyps, test["tgt"], "en"),
    }
    write_results(out / "results.test.json", results)
    (out / "hyp.test.en").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    print(json.dumps({k: results[k] for k in ("steps", "epochs", "minutes_until_trained", "bleu", "chrf")}))


if __name__ == "__main__":
    main()
