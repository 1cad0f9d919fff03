"""The ML libraries, imported once per process before any thread uses them.

transformers (and the hub client, and peft) resolve their names lazily, on first use;
two threads doing that at the same time (the device thread loading a model, another
thread looking a base up in the hub cache) can see a half-initialised module and fail
with "cannot import name 'AutoTokenizer'". Every thread that is about to use them calls
`import_libraries()` first: the first caller imports, the others wait for it under the
lock, and from then on it costs nothing. It runs on the device thread when that starts,
so commands that never touch a model do not pay for the import on the main thread.
"""

from __future__ import annotations

import threading

_imported = threading.Lock()
_import_done = False


def import_libraries() -> None:
    """Imports torch, transformers, peft and the hub client, and every name Tsuzuki
    takes from them, once per process (later calls wait for the first, then return)."""
    global _import_done
    with _imported:
        if _import_done:
            return
        import huggingface_hub
        import peft
        import tokenizers  # noqa: F401
        import torch  # noqa: F401
        import transformers
        from transformers import activations, cache_utils, pytorch_utils  # noqa: F401

        for name in (
            "AutoConfig",
            "AutoModelForCausalLM",
            "AutoTokenizer",
            "DynamicCache",
            "GPT2Config",
            "GPT2LMHeadModel",
            "PreTrainedTokenizerFast",
            # Not the bases' own tokenizer classes (T5Tokenizer, …): they cost a second
            # to import, and only the device thread ever loads a tokenizer.
        ):
            getattr(transformers, name)
        for name in ("LoraConfig", "PeftConfig", "PeftModel", "get_peft_model"):
            getattr(peft, name)
        # The hub client resolves its names lazily too (bot/generation/bases.py).
        for name in ("HfApi", "constants", "snapshot_download", "try_to_load_from_cache"):
            getattr(huggingface_hub, name)
        quiet_libraries()
        _import_done = True


def quiet_libraries() -> None:
    """Loading and saving print progress bars and advice on stderr, which would be
    mixed into the console channel; our own logs and progress say what matters."""
    import warnings

    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    disable_progress_bars()
    # Raised by transformers' own save_pretrained on every save; nothing for us to do.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
