"""Does a model translate as well with bf16 weights as with fp32 ones? BLEU and time on one split.

    python benchmarks/bf16_decoding_quality.py runs/multi30k-de-en/model --split validation \
        --json benchmarks/results/bf16-decoding-quality.json

Translates the split with the model's own decoding (beam 4, §6.1) twice, loading the weights as
float32 and then as bfloat16 (`translate --dtype bfloat16`), and reports sacreBLEU, chrF, how many
translations are identical, and the seconds each took, in one run on one machine. Scored on
validation: test2016 is for reported results only. On a CPU without native bf16 (no `avx512_bf16`
or AMX) torch emulates bf16 and it is slower, which the times will show.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_model import cpu_description  # noqa: E402
from train.data import add_data_arguments, load_split_from_arguments  # noqa: E402
from train.evaluate import score  # noqa: E402
from train.model_folder import DTYPES, load_model  # noqa: E402
from train.translate import translate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a trained model folder")
    add_data_arguments(parser, split="validation")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    data = load_split_from_arguments(args)
    machine = cpu_description() | {"torch": torch.__version__}
    print(json.dumps(machine))
    rows, hypotheses = [], {}
    for dtype in DTYPES:  # float32 first: the reference
        model, tokenizer = load_model(args.model, dtype=dtype)
        start = time.perf_counter()
        hypotheses[dtype] = translate(model, tokenizer, data["src"])
        seconds = time.perf_counter() - start
        scores = score(hypotheses[dtype], data["tgt"], args.tgt_lang)
        identical = sum(a == b for a, b in zip(hypotheses["float32"], hypotheses[dtype], strict=True))
        rows.append(
            {
                "dtype": dtype,
                "bleu": scores["bleu"],
                "chrf": scores["chrf"],
                "bleu_signature": scores["bleu_signature"],
                "identical_to_float32": identical / len(hypotheses[dtype]),
                "seconds": seconds,
                "speed_vs_float32": rows[0]["seconds"] / seconds if rows else 1.0,
            }
        )
        print(f"{dtype:9s} BLEU {scores['bleu']:.2f} chrF {scores['chrf']:.2f} {seconds:.1f}s", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "machine": machine,
            "command": " ".join(sys.argv),
            "model": args.model,
            "split": args.split,
            "sentences": len(data),
            "rows": rows,
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
