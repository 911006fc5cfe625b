"""The paper's learning-rate schedule (Vaswani et al., 2017, §5.3 "Optimizer"), as training runs it.

"We used the Adam optimizer with beta1 = 0.9, beta2 = 0.98 and epsilon = 1e-9. We varied the
learning rate over the course of training, according to the formula:

    lrate = d_model^-0.5 * min(step_num^-0.5, step_num * warmup_steps^-1.5)

This corresponds to increasing the learning rate linearly for the first warmup_steps training
steps, and decreasing it thereafter proportionally to the inverse square root of the step number.
We used warmup_steps = 4000."

Training uses the Trainer's own scheduler (`train.train.training_arguments`):
`lr_scheduler_type=LR_SCHEDULER_TYPE` ("inverse_sqrt"), `warmup_steps=warmup` and
`learning_rate=peak_learning_rate(d_model, warmup, factor)`. transformers' `inverse_sqrt` scales
the peak by `k / warmup` below the warm-up and by `sqrt(warmup / k)` from there on, where `k`
counts optimizer updates from 0. So update `k` uses `factor * lrate(k)`: the paper's curve, one
update late. What that changes:

- The first update (`k = 0`) has learning rate 0. Its gradient still enters Adam's moment
  estimates and bias-correction count; only the weights do not move. One batch of the run is spent
  on the moments alone.
- Every later update `k` uses the rate the paper gives update `k` rather than `k + 1`: `k / (k + 1)`
  of it during the warm-up, `sqrt((k + 1) / k)` times it afterwards (less than `1 + 1 / (2k)`).
- Summed over the warm-up the rates fall short by exactly one update at the peak rate
  (`sum_{k < w} lrate(k) = sum_{1 <= k <= w} lrate(k) - lrate(w)`), i.e. by `2 / warmup` of the
  warm-up's total: 0.5% with the quick recipe's warm-up of 400, 0.05% with the paper's 4000.

That is negligible, and transformers has no public setting that shifts `inverse_sqrt` by one step
(it takes only `timescale`), so training keeps the stock scheduler rather than a custom one. The
test (`tests/test_train_schedule.py`) builds the scheduler a run builds and compares every step
with the formula above.

Cool-down (not in the paper, `TrainConfig.cooldown_fraction`): §5.3's curve never reaches zero, so a
run stopped by a time budget ends at a high learning rate. With a cool-down, the last fraction of
the budget multiplies the curve by a factor falling linearly from 1 to 0 (`cooldown_factor`), as a
"warmup-stable-decay" schedule does; `TokenBudgetSeq2SeqTrainer(lr_multiplier=...)` applies it.
"""

from __future__ import annotations

LR_SCHEDULER_TYPE = "inverse_sqrt"
"""transformers' name of the schedule training uses (with `warmup_steps` and the peak below)."""


def peak_learning_rate(d_model: int, warmup_steps: int, factor: float = 1.0) -> float:
    """`factor * d_model^-0.5 * warmup_steps^-0.5`: §5.3's `lrate` at `step_num = warmup_steps`, its
    maximum. `factor` scales the whole curve (the paper's is 1; tensor2tensor calls it the
    "learning_rate" hyper-parameter)."""
    if d_model < 1 or warmup_steps < 1:
        raise ValueError(f"d_model and warmup_steps must be >= 1, got d_model={d_model}, warmup_steps={warmup_steps}")
    if factor <= 0:
        raise ValueError(f"the learning-rate factor must be > 0, got {factor}")
    return factor * d_model**-0.5 * warmup_steps**-0.5


def cooldown_factor(progress: float, cooldown_fraction: float) -> float:
    """The learning-rate multiplier at `progress` (the fraction of the training budget spent, 0 to 1):
    1 until `1 - cooldown_fraction`, then linearly down to 0 at the end of the budget."""
    if not 0.0 <= cooldown_fraction < 1.0:
        raise ValueError(f"cooldown_fraction must be in [0, 1), got {cooldown_fraction}")
    if cooldown_fraction == 0.0:
        return 1.0
    return min(1.0, max(0.0, (1.0 - progress) / cooldown_fraction))
