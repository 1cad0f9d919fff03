"""The Slack App Home tab, drawn from the core's HomeState (bot/core/home.py): a pure
function, so what a member sees is what the tests read."""

from __future__ import annotations

from typing import Any

from bot import messages as M
from bot.core.home import ChannelHome, HomeState

# Slack allows 100 blocks a view: a few of ours are the member's own.
MAX_CHANNELS = 40
VOICE_OFF = "home_voice_off"
OPT_OUT = "home_opt_out"
OPT_IN = "home_opt_in"


def _text(markdown: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": markdown}


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text[:75]}


def _channel_line(channel: ChannelHome) -> str:
    if channel.version is None:
        model = M.t("home_base_model")
    elif channel.bits_per_char is not None and channel.markov_bits_per_char is not None:
        model = M.t(
            "home_version_bits",
            version=channel.version,
            bits=f"{channel.bits_per_char:.2f}",
            markov=f"{channel.markov_bits_per_char:.2f}",
        )
    else:
        model = M.t("home_version", version=channel.version)
    training = M.t("home_training_on" if channel.training else "home_training_off")
    return f"*<#{channel.ref.channel}>* — {model} · {training}"


def home_view(state: HomeState) -> dict[str, Any]:
    """The `home` view for views.publish."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(M.t("home_title"))},
        {"type": "section", "text": _text(M.t("home_channels"))},
    ]
    for channel in state.channels[:MAX_CHANNELS]:
        block: dict[str, Any] = {"type": "section", "text": _text(_channel_line(channel))}
        if channel.voice_lent:
            block["accessory"] = {
                "type": "button",
                "action_id": VOICE_OFF,
                "value": channel.ref.channel,
                "text": _plain(M.t("home_voice_off")),
            }
        blocks.append(block)
    if not state.channels:
        blocks.append({"type": "context", "elements": [_text(M.t("home_no_channels"))]})
    blocks.append({"type": "divider"})
    lent = [f"<#{c.ref.channel}>" for c in state.channels if c.voice_lent]
    you = [M.t("home_opted_out" if state.opted_out else "home_opted_in")]
    you.append(M.t("home_voice_lent", channels=", ".join(lent)) if lent else M.t("home_no_voice"))
    blocks.append({"type": "section", "text": _text("\n".join(you))})
    if state.opted_out:
        button = {"type": "button", "action_id": OPT_IN, "text": _plain(M.t("home_opt_in"))}
    else:
        # Asked twice: Slack shows this dialog before the action is sent.
        button = {
            "type": "button",
            "action_id": OPT_OUT,
            "style": "danger",
            "text": _plain(M.t("home_opt_out")),
            "confirm": {
                "title": _plain(M.t("home_opt_out_title")),
                "text": _text(M.t("home_opt_out_confirm")),
                "confirm": _plain(M.t("home_opt_out")),
                "deny": _plain(M.t("home_cancel")),
                "style": "danger",
            },
        }
    blocks.append({"type": "actions", "elements": [button]})
    return {"type": "home", "blocks": blocks}
