"""Train the shared source/target BPE tokenizer (§5.1) on a dataset's training split.

python -m train.train_tokenizer --dataset multi30k --src-lang de --tgt-lang en --vocab-size 8000 --output runs/tok
python -m train.train_tokenizer --files train.de train.en --vocab-size 8000 --output runs/tok
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import hf_vanilla_transformer as hvt
from train.data import add_data_arguments, load_split_from_arguments


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    add_data_arguments(parser, split="train", dataset_group=source)
    source.add_argument("--files", nargs="+", help="plain-text files, one sentence per line")
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--output", required=True, help="folder to save the tokenizer to")
    args = parser.parse_args(argv)
    output = Path(args.output)
    if (output / "tokenizer.json").exists():
        raise FileExistsError(f"{output} already holds a tokenizer; choose another --output")
    if args.files:
        tokenizer = hvt.train_tokenizer(args.files, vocab_size=args.vocab_size, show_progress=True)
    else:
        data = load_split_from_arguments(args)
        tokenizer = hvt.train_tokenizer(
            texts=list(data["src"]) + list(data["tgt"]), vocab_size=args.vocab_size, show_progress=True
        )
    tokenizer.save_pretrained(output)
    print(f"saved a shared BPE vocabulary of {len(tokenizer)} tokens to {output}")
    return output


if __name__ == "__main__":
    main()
