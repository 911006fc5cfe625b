"""The paper's optimizer and learning-rate schedule (Vaswani et al., 2017, §5.3 "Optimizer").

"We used the Adam optimizer with beta1 = 0.9, beta2 = 0.98 and epsilon = 1e-9. We varied the
learning rate over the course of training, according to the formula:

    lrate = d_model^-0.5 * min(step_num^-0.5, step_num * warmup_steps^-1.5)

This corresponds to increasing the learning rate linearly for the first warmup_steps training
steps, and decreasing it thereafter proportionally to the inverse square root of the step number.
We used warmup_steps = 4000."

The peak, at `step_num = warmup_steps`, is `(d_model * warmup_steps)^-0.5` (7.0e-4 for the base
model). `step_num` counts from 1; PyTorch schedulers count optimizer steps from 0, so the
scheduler below evaluates the formula at `step + 1`, as fairseq and tensor2tensor do.

Equivalent Trainer setting: `lr_scheduler_type="inverse_sqrt"`, `warmup_steps=warmup` and
`learning_rate=(d_model * warmup) ** -0.5` give `lrate(step)` at step `step`, i.e. the same
curve one step later, starting from a learning rate of 0 at the first update (see the tests).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR

ADAM_BETAS = (0.9, 0.98)
ADAM_EPS = 1e-9


def noam_lr(step: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    """`factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)` for `step >= 1` (§5.3).

    `factor` scales the whole curve (the paper uses 1; tensor2tensor exposes it as the
    "learning_rate" hyper-parameter, often 2).
    """
    if step < 1:
        raise ValueError(f"step counts from 1 in the paper's formula, got {step}")
    if d_model < 1 or warmup < 1:
        raise ValueError(f"d_model and warmup must be >= 1, got d_model={d_model}, warmup={warmup}")
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def noam_schedule(
    optimizer: torch.optim.Optimizer, d_model: int, warmup: int, factor: float = 1.0, last_epoch: int = -1
) -> LambdaLR:
    """A `LambdaLR` giving each parameter group the absolute learning rate `noam_lr(step + 1, ...)`.

    `LambdaLR` multiplies a group's initial `lr` by the lambda; this function sets every group's
    `lr` (and `initial_lr`) to `factor` and lets the lambda return the paper's `lrate`, so after
    `k` calls of `scheduler.step()` the optimizer uses `factor * lrate(k + 1)`. Any `lr` the
    optimizer was built with is replaced. Pass `last_epoch` to resume, as with any scheduler.
    """
    noam_lr(1, d_model, warmup)  # validates the arguments now rather than at the first step
    for group in optimizer.param_groups:
        group["lr"] = factor
        group["initial_lr"] = factor
    return LambdaLR(optimizer, partial(_noam_lambda, d_model=d_model, warmup=warmup), last_epoch=last_epoch)


def _noam_lambda(step: int, d_model: int, warmup: int) -> float:
    """Module-level (not a closure) so that the scheduler's state can be pickled."""
    return noam_lr(step + 1, d_model, warmup)


def adam_for_transformer(params: Iterable[torch.nn.Parameter] | Iterable[dict], lr: float) -> torch.optim.Adam:
    """Adam with the paper's beta1 = 0.9, beta2 = 0.98, epsilon = 1e-9 (§5.3)."""
    return torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS)
