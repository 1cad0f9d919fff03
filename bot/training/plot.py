"""The loss curve of a run, saved as a PNG next to the version it produced."""

from __future__ import annotations

from pathlib import Path

# The file name of the curve in a version's directory.
LOSS_CURVE = "loss.png"


def save_loss_curve(
    losses: list[float],
    path: Path,
    *,
    eval_loss: float | None,
    start_eval_loss: float | None,
    valid: list[tuple[int, float]] | None = None,
    best_step: int | None = None,
) -> None:
    # The object API, not pyplot: no global state, so it may run on any thread (the
    # service renders off the event loop), and no display is needed.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.subplots()
    steps = range(1, len(losses) + 1)
    ax.plot(steps, losses, linewidth=1, alpha=0.5, label="train loss (per step)")
    if len(losses) >= 10:
        window = max(5, len(losses) // 20)
        smooth = [
            sum(losses[max(0, i - window + 1) : i + 1])
            / len(losses[max(0, i - window + 1) : i + 1])
            for i in range(len(losses))
        ]
        ax.plot(steps, smooth, linewidth=2, label=f"train loss ({window}-step mean)")
    if valid:
        ax.plot(*zip(*valid, strict=True), "o-", markersize=3, label="validation loss (network)")
    if best_step:
        ax.axvline(best_step, color="green", linestyle="-.", alpha=0.6, label="weights kept")
    if start_eval_loss is not None:
        ax.axhline(start_eval_loss, color="grey", linestyle=":", label="eval loss before")
    if eval_loss is not None:
        ax.axhline(eval_loss, color="red", linestyle="--", label="eval loss after (with n-gram)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
