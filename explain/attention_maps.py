"""Attention you can see: the attention weights of a trained model on one sentence pair, as heatmaps.

    python -m explain.attention_maps --model runs/multi30k-de-en/model \\
        --source "Ein Mann rasiert sich, während er am Strand sitzt." --out figures/
    python -m explain.attention_maps --model DIR --source "..." --reference "..." --out DIR --layers 3

Each attention sub-layer of §3.2.3 computes, per head, the weights softmax(Q K^T / sqrt(d_k)) of
eq. (1), §3.2.1: row i says how much query position i takes from each key position, and sums to 1.

- encoder self-attention: source positions attend to all source positions;
- masked decoder self-attention: target position i attends to positions <= i only (§3.2.3), so the
  matrix is lower triangular; its upper triangle, which the mask removes, is drawn empty;
- encoder-decoder attention: each target position attends to all source positions, which is how the
  model aligns the word it is about to write with the source words.

`record_attention` runs the model once, teacher-forced, on the source and a target: the given
reference or, without one, the model's own translation (with its generation config: beam 4 for this
project's models, unless `num_beams` is given). The decoder is causal, so position i computes the same
thing in this single pass as when the translation was decoded one token at a time (with a KV cache:
`tests/test_generation.py` checks cached against uncached decoding); the weights are those the model
used to choose each word.

Models load with PyTorch's SDPA kernel by default, which never forms the weight matrix, so
`output_attentions=True` alone returns nothing (transformers only warns). `eager_attention` switches the
model to the eager kernel (`attention.scaled_dot_product_attention`, eq. 1 written out) through the
public `set_attn_implementation` for the recording, and restores the caller's kernel afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from explain.png import save_png
from explain.token_labels import readable_tokens

KINDS = ("encoder-self", "decoder-self", "cross")
"""The three uses of attention in the Transformer (§3.2.3), as named in file names and on the command line."""

TITLES = {
    "encoder-self": "encoder self-attention",
    "decoder-self": "masked decoder self-attention",
    "cross": "encoder-decoder attention",
}


@dataclass(frozen=True)
class AttentionMaps:
    """The attention weights of one sentence pair, every layer and head (batch dimension removed).

    Decoder position i reads the decoder input `target_tokens[i]` (`<s> y_1 ... y_{T-1}`, the target
    shifted right, §3.1) and predicts `predicted_tokens[i]` (`y_1 ... y_T`, ending with `</s>`).
    """

    source_text: str
    source_tokens: list[str]  # S readable source pieces, `</s>` included
    target_tokens: list[str]  # T decoder inputs
    predicted_tokens: list[str]  # T tokens the decoder positions predict
    target_text: str  # the target sentence: the reference, or the model's translation
    teacher_forced_on: str  # "reference" or "translation"
    encoder_self: torch.Tensor  # (L_enc, h, S, S)
    decoder_self: torch.Tensor  # (L_dec, h, T, T)
    cross: torch.Tensor  # (L_dec, h, T, S)

    def weights(self, kind: str) -> torch.Tensor:
        """(L, h, queries, keys) for `kind` in `KINDS`."""
        if kind not in KINDS:
            raise ValueError(f"attention kind must be one of {KINDS}, got {kind!r}")
        return {"encoder-self": self.encoder_self, "decoder-self": self.decoder_self, "cross": self.cross}[kind]

    def labels(self, kind: str) -> tuple[list[str], list[str]]:
        """(query labels, key labels) for `kind`. The rows of encoder-decoder attention are labelled with
        the token each position predicts, so that the picture reads as an alignment of output to input words."""
        if kind not in KINDS:
            raise ValueError(f"attention kind must be one of {KINDS}, got {kind!r}")
        if kind == "encoder-self":
            return self.source_tokens, self.source_tokens
        if kind == "decoder-self":
            return self.target_tokens, self.target_tokens
        return self.predicted_tokens, self.source_tokens


@contextlib.contextmanager
def eager_attention(model: PreTrainedModel) -> Iterator[PreTrainedModel]:
    """Run the block with the eager attention kernel, which returns the weights; restore the model's own after.

    Raises RuntimeError if transformers refuses the switch (it only logs a warning for models it cannot
    switch), rather than record nothing.
    """
    previous = model.config._attn_implementation
    if previous != "eager":
        model.set_attn_implementation("eager")
        if model.config._attn_implementation != "eager":
            raise RuntimeError(
                f"{type(model).__name__}: could not switch attention from {previous!r} to 'eager' with "
                "set_attn_implementation; the attention weights cannot be recorded"
            )
    try:
        yield model
    finally:
        if previous != "eager":
            model.set_attn_implementation(previous)


@contextlib.contextmanager
def evaluation_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """`model.eval()` (no dropout, so the weights are the trained model's) for the block, then the caller's mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _translation_ids(model: PreTrainedModel, encoded: dict, num_beams: int | None) -> torch.Tensor:
    """The model's translation `<s> y_1 ... y_T` (1, T+1), `</s>` included when it was reached."""
    options = {} if num_beams is None else {"num_beams": num_beams}
    sequence = model.generate(**encoded, **options)[0]
    ends = (sequence[1:] == model.config.eos_token_id).nonzero()
    if len(ends):  # nothing after the first `</s>`
        sequence = sequence[: int(ends[0]) + 2]
    return sequence[None]


@torch.no_grad()
def record_attention(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    source: str,
    reference: str | None = None,
    num_beams: int | None = None,
) -> AttentionMaps:
    """The attention weights of `source` and a target: `reference` if given, else the model's translation.

    The model is left as it was: same attention kernel, same train/eval mode, no gradients.
    `num_beams` overrides the model's generation config when translating (1: greedy).
    """
    if not source.strip():
        raise ValueError("source sentence is empty")
    if reference is not None and not reference.strip():
        raise ValueError("reference sentence is empty (pass None to use the model's translation)")
    device = next(model.parameters()).device
    encoded = tokenizer(source, return_tensors="pt").to(device)
    with evaluation_mode(model):
        if reference is None:
            sequence = _translation_ids(model, dict(encoded), num_beams)
            decoder_input_ids, labels = sequence[:, :-1], sequence[:, 1:]
            target_text = tokenizer.decode(sequence[0], skip_special_tokens=True)
        else:
            labels = tokenizer(text_target=reference, return_tensors="pt")["input_ids"].to(device)
            decoder_input_ids = model.prepare_decoder_input_ids_from_labels(labels)
            target_text = reference
        with eager_attention(model):
            outputs = model(**encoded, decoder_input_ids=decoder_input_ids, output_attentions=True, use_cache=False)
    recorded = (outputs.encoder_attentions, outputs.decoder_attentions, outputs.cross_attentions)
    if any(weights is None or any(w is None for w in weights) for weights in recorded):
        raise RuntimeError(
            f"{type(model).__name__} returned no attention weights with output_attentions=True under eager attention"
        )
    encoder_self, decoder_self, cross = (torch.stack(weights)[:, 0].float().cpu() for weights in recorded)
    return AttentionMaps(
        source_text=source,
        source_tokens=readable_tokens(tokenizer, encoded["input_ids"][0]),
        target_tokens=readable_tokens(tokenizer, decoder_input_ids[0]),
        predicted_tokens=readable_tokens(tokenizer, labels[0]),
        target_text=target_text,
        teacher_forced_on="translation" if reference is None else "reference",
        encoder_self=encoder_self,
        decoder_self=decoder_self,
        cross=cross,
    )


# ------------------------------------------------------------------------------------------ plotting
def draw_attention_layer(maps: AttentionMaps, kind: str, layer: int):
    """A matplotlib figure: every head of layer `layer` (0-based) of `kind`, and their mean, with token labels.

    Rows are queries, columns keys; the colour scale is 0..1 in every panel. In masked decoder
    self-attention the cells above the diagonal, which the causal mask removes (§3.2.3), are masked
    out of the image and so left blank.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    weights = maps.weights(kind)
    num_layers, num_heads, num_queries, num_keys = weights.shape
    if not 0 <= layer < num_layers:
        raise ValueError(f"{kind} has layers 0..{num_layers - 1}, got layer {layer}")
    rows, cols = maps.labels(kind)
    panels = [(f"head {h + 1}", weights[layer, h]) for h in range(num_heads)]
    panels.append((f"mean of the {num_heads} heads", weights[layer].mean(dim=0)))
    blank = np.zeros((num_queries, num_keys), dtype=bool)
    if kind == "decoder-self":
        blank = np.triu(np.ones((num_queries, num_keys), dtype=bool), k=1)  # j > i: future positions

    ncols = math.ceil(math.sqrt(len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    cell = 0.16  # inches per token
    side = max(2.2, cell * max(num_queries, num_keys)) + 1.0  # + room for the labels
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * side + 0.8, nrows * side + 0.7), squeeze=False, layout="constrained"
    )
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    image = None
    for ax, (title, matrix) in zip(axes.flat, panels, strict=False):  # a grid may have spare cells
        image = ax.imshow(np.ma.masked_array(matrix.numpy(), mask=blank), cmap=cmap, vmin=0.0, vmax=1.0)
        ax.set_title(title, fontsize=9)
        ax.set_xticks(range(num_keys), cols, rotation=90, fontsize=7)
        ax.set_yticks(range(num_queries), rows, fontsize=7)
        ax.tick_params(length=0)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    heading = f"{TITLES[kind]}, layer {layer + 1} of {num_layers}"
    where = "the model's translation" if maps.teacher_forced_on == "translation" else "reference"
    fig.suptitle(f"{heading}\nsource: {maps.source_text}\ntarget ({where}): {maps.target_text}", fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight (rows sum to 1)")
    return fig


def plot_attention_layer(maps: AttentionMaps, kind: str, layer: int, path: str | Path, dpi: int = 80) -> Path:
    """`draw_attention_layer` written to the PNG file `path`."""
    import matplotlib.pyplot as plt

    fig = draw_attention_layer(maps, kind, layer)
    try:
        return save_png(fig, path, dpi=dpi)
    finally:
        plt.close(fig)


def plot_attention(
    maps: AttentionMaps,
    out_dir: str | Path,
    kinds: Sequence[str] = KINDS,
    layers: Sequence[int] | None = None,
    prefix: str = "attention",
    dpi: int = 80,
) -> list[Path]:
    """`out_dir/{prefix}-{kind}-layer{n}.png` for each kind and layer (`layers` 1-based; default all)."""
    chosen = {}  # checked before anything is written
    for kind in kinds:
        num_layers = maps.weights(kind).shape[0]
        chosen[kind] = list(layers or range(1, num_layers + 1))
        for number in chosen[kind]:
            if not 1 <= number <= num_layers:
                raise ValueError(f"{kind}: layers are numbered 1..{num_layers}, got {number}")
    return [
        plot_attention_layer(maps, kind, number - 1, Path(out_dir) / f"{prefix}-{kind}-layer{number}.png", dpi=dpi)
        for kind, numbers in chosen.items()
        for number in numbers
    ]


# ------------------------------------------------------------------------------------------ command line
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m explain.attention_maps",
        description="Draw a trained model's attention weights on one sentence as heatmaps (PNG).",
    )
    parser.add_argument("--model", required=True, help="a trained model folder (with its tokenizer)")
    parser.add_argument("--source", required=True, help="the source sentence")
    parser.add_argument("--reference", help="a target sentence to teacher-force (default: the model's translation)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNG files")
    parser.add_argument("--layers", type=int, nargs="+", help="layer numbers, from 1 (default: all)")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="which attention (default: all)")
    parser.add_argument("--prefix", default="attention", help="file names are PREFIX-KIND-layerN.png")
    parser.add_argument("--beams", type=int, help="beam size for the translation (default: the model's; 1 = greedy)")
    parser.add_argument("--dpi", type=int, default=80, help="resolution of the PNG files (default: 80)")
    args = parser.parse_args(argv)
    if args.beams is not None and args.beams < 1:
        parser.error(f"--beams must be at least 1, got {args.beams}")
    if args.dpi < 10:
        parser.error(f"--dpi must be at least 10, got {args.dpi}")
    return args


def main(argv: Sequence[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    from train.model_folder import load_model

    model, tokenizer = load_model(args.model)
    maps = record_attention(model, tokenizer, args.source, args.reference, num_beams=args.beams)
    print(f"target ({maps.teacher_forced_on}): {maps.target_text}")
    written = plot_attention(maps, args.out, args.kinds, args.layers, args.prefix, dpi=args.dpi)
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
