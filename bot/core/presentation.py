"""How a model version is shown to people: its quality line, its banner, its loss curve.
Used by /models, training notices, the console and the CLI alike."""

from __future__ import annotations

from pathlib import Path

from bot import messages as M
from bot.domain import ModelVersionInfo
from bot.training.plot import LOSS_CURVE


def figure(value: float | None) -> str:
    """A bits-per-character figure as shown: two decimals, or a dash when unknown."""
    return "—" if value is None else f"{value:.2f}"


def quality_fields(v: ModelVersionInfo) -> dict[str, object]:
    """A version's quality line: its held-out bits per character, the channel's Markov
    chain's on the same messages, and their ratio (below 1: better than the chain);
    and the same as users meet them, both learning every message at once ("live")."""
    return {
        "version": v.version,
        "bits": figure(v.eval_bits_per_char),
        "markov": figure(v.markov_bits_per_char),
        "ratio": _ratio(v.eval_bits_per_char, v.markov_bits_per_char),
        "live": figure(v.live_bits_per_char),
        "live_markov": figure(v.live_markov_bits_per_char),
        "live_ratio": _ratio(v.live_bits_per_char, v.live_markov_bits_per_char),
    }


def _ratio(bits: float | None, markov: float | None) -> str:
    return M.t("quality_ratio", ratio=bits / markov) if bits is not None and markov else ""


def loss_curve(v: ModelVersionInfo) -> str | None:
    """The PNG of the version's training run, written next to its weights; None when its
    files are gone (pruned, forgotten)."""
    path = Path(v.path) / LOSS_CURVE
    return str(path) if path.is_file() else None


def version_banner(v: ModelVersionInfo) -> str:
    """ "v2 (2.41 bits/char; Markov chain: 2.19)", as the console's welcome names it."""
    fields = quality_fields(v)
    return f"v{v.version} ({fields['bits']} bits/char; Markov chain: {fields['markov']})"


def version_line(v: ModelVersionInfo) -> str:
    """One version in /models: number, status, figures, base, method, when, note."""
    return M.t(
        "models_line",
        version=v.version,
        status=v.status,
        bits=figure(v.eval_bits_per_char),
        markov=figure(v.markov_bits_per_char),
        live=figure(v.live_bits_per_char),
        live_markov=figure(v.live_markov_bits_per_char),
        base=v.base_model,
        method=v.method,
        eval_loss="—" if v.eval_loss is None else f"{v.eval_loss:.3f}",
        created=v.created_at.strftime("%Y-%m-%d %H:%M"),
    ) + (f" — {v.note}" if v.note else "")
