"""Pictures of the sinusoidal positional encoding (§3.5) and of how alike it makes nearby positions.

    python -m explain.positional_encoding_plots --model runs/multi30k-de-en/model --out figures/
    python -m explain.positional_encoding_plots --d-model 512 --out figures/   # the paper's base size

The Transformer has no recurrence and no convolution, so it adds to each token embedding a vector
that depends only on the token's position (§3.5):

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

Each pair of dimensions is a sine and cosine of one frequency, the frequencies falling geometrically
from 1 to 1/10000 across the dimensions. The pictures show the table the model itself adds (its
`embed_positions`, in the model's layout; not a re-derivation), and the dot products between positions

    PE(p) . PE(q) = sum_i [sin(w_i p) sin(w_i q) + cos(w_i p) cos(w_i q)] = sum_i cos(w_i (p - q)),

which depend only on the offset p - q: largest (d_model / 2, every pair contributing 1) at p = q and
falling off with distance, so nearby positions look alike. The dot products are not normalised; since
every row of the table has the same squared norm d_model / 2, the cosine similarity is the dot
product divided by d_model / 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import PreTrainedModel

from explain.png import save_png
from hf_vanilla_transformer.positional_encoding import LearnedPositionalEmbedding, SinusoidalPositionalEncoding


def model_position_table(model: PreTrainedModel, num_positions: int) -> tuple[torch.Tensor, str]:
    """The first `num_positions` rows of the position table the model's encoder adds, (P, d_model),
    and a description of it (sinusoidal and its layout, or learned)."""
    positions = model.get_encoder().embed_positions
    if isinstance(positions, SinusoidalPositionalEncoding):
        table, kind = positions.table, f"sinusoidal, {positions.layout} layout"
    elif isinstance(positions, LearnedPositionalEmbedding):
        table, kind = positions.weight, "learned"
    else:
        raise TypeError(f"unknown position encoding module {type(positions).__name__}")
    if not 1 <= num_positions <= table.shape[0]:
        raise ValueError(f"the model has positions 0..{table.shape[0] - 1}; cannot show {num_positions} of them")
    return table[:num_positions].detach().float().cpu(), kind


def sinusoidal_position_table(num_positions: int, d_model: int, layout: str = "interleaved") -> torch.Tensor:
    """The table of the package's `SinusoidalPositionalEncoding` module, (num_positions, d_model)."""
    if num_positions < 1:
        raise ValueError(f"num_positions must be at least 1, got {num_positions}")
    return SinusoidalPositionalEncoding(num_positions, d_model, layout).table


def position_dot_products(table: torch.Tensor) -> torch.Tensor:
    """(P, d_model) table -> (P, P) matrix of dot products PE(p) . PE(q), not normalised."""
    if table.dim() != 2:
        raise ValueError(f"expected a (positions, d_model) table, got shape {tuple(table.shape)}")
    return table @ table.T


def plot_position_table(table: torch.Tensor, path: str | Path, description: str, dpi: int = 80) -> Path:
    """The table as an image: positions down, dimensions across, values in [-1, 1] for sinusoids."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_positions, d_model = table.shape
    limit = max(1.0, float(table.abs().max()))
    fig, ax = plt.subplots(figsize=(8, 4.2), layout="constrained")
    image = ax.imshow(table.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
    ax.set_xlabel("dimension (low dimensions: fast waves; high: slow waves)")
    ax.set_ylabel("position")
    ax.set_title(
        f"Positional encoding (§3.5), d_model = {d_model} ({description})\nrow pos is the vector added at position pos",
        fontsize=10,
    )
    fig.colorbar(image, ax=ax, label="PE(pos, dim)")
    try:
        return save_png(fig, path, dpi=dpi)
    finally:
        plt.close(fig)


def plot_position_dot_products(
    table: torch.Tensor, path: str | Path, description: str, marked: Sequence[int] | None = None, dpi: int = 80
) -> Path:
    """Left: the matrix PE(p) . PE(q); right: the row of a few positions `marked` (default: three spread
    over the table), each peaking at its own position and falling off with distance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num_positions, d_model = table.shape
    dots = position_dot_products(table)
    marked = list(marked) if marked is not None else [num_positions // 6, num_positions // 2, 5 * num_positions // 6]
    for position in marked:
        if not 0 <= position < num_positions:
            raise ValueError(f"marked position {position} is outside 0..{num_positions - 1}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2), layout="constrained", width_ratios=(1, 1.25))
    image = left.imshow(dots.numpy(), cmap="viridis", interpolation="nearest")
    left.set_xlabel("position q")
    left.set_ylabel("position p")
    left.set_title("PE(p) . PE(q)  (not normalised)", fontsize=10)
    fig.colorbar(image, ax=left, shrink=0.8)
    for position in marked:
        right.plot(range(num_positions), dots[position].numpy(), label=f"p = {position}")
        right.axvline(position, color="grey", linewidth=0.5)
    right.set_xlabel("position q")
    right.set_ylabel("PE(p) . PE(q)")
    right.set_title(f"rows of the matrix (maximum d_model / 2 = {d_model // 2} at q = p)", fontsize=10)
    right.legend(fontsize=8)
    fig.suptitle(f"Dot products between positional encodings, d_model = {d_model} ({description})", fontsize=11)
    try:
        return save_png(fig, path, dpi=dpi)
    finally:
        plt.close(fig)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m explain.positional_encoding_plots",
        description="Draw the positional-encoding table (§3.5) and the dot products between positions (PNG).",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a trained model folder: draw the table its encoder adds")
    source.add_argument("--d-model", type=int, help="draw the package's sinusoidal table for this d_model instead")
    parser.add_argument("--layout", choices=("interleaved", "concat"), default="interleaved", help="with --d-model")
    parser.add_argument("--positions", type=int, default=100, help="how many positions to show (default: 100)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the PNG files")
    parser.add_argument("--prefix", default="positional-encoding", help="file names start with PREFIX")
    parser.add_argument("--dpi", type=int, default=80, help="resolution of the PNG files (default: 80)")
    args = parser.parse_args(argv)
    if args.positions < 1:
        parser.error(f"--positions must be at least 1, got {args.positions}")
    if args.d_model is not None and (args.d_model < 2 or args.d_model % 2):
        parser.error(f"--d-model must be a positive even number, got {args.d_model}")
    if args.dpi < 10:
        parser.error(f"--dpi must be at least 10, got {args.dpi}")
    return args


def main(argv: Sequence[str] | None = None) -> list[Path]:
    args = parse_args(argv)
    if args.model is not None:
        from train.model_folder import load_checked_model

        table, description = model_position_table(load_checked_model(args.model), args.positions)
    else:
        table = sinusoidal_position_table(args.positions, args.d_model, args.layout)
        description = f"sinusoidal, {args.layout} layout"
    written = [
        plot_position_table(table, args.out / f"{args.prefix}.png", description, dpi=args.dpi),
        plot_position_dot_products(table, args.out / f"{args.prefix}-dot-products.png", description, dpi=args.dpi),
    ]
    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
