"""The device worker: one thread that owns the device and runs all torch work.

Torch calls block for milliseconds to minutes; running them on the asyncio event loop
would freeze every platform connection. One thread (not a pool) also means jobs never
fight over the cores or the GPU, and the global torch RNG is seeded per job safely.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def configure_torch(threads: int) -> None:
    """Thread settings for the device thread (see bot/__init__.py for the wait policy)."""
    import warnings

    import torch
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    torch.set_num_threads(max(1, threads))
    # Loading and saving print progress bars and advice on stderr, which would be mixed
    # into the console channel; our own logs and progress say what matters.
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    disable_progress_bars()
    # Raised by transformers' own save_pretrained on every save; nothing for us to do.
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated")
    log.debug("torch uses %d threads", torch.get_num_threads())


class DeviceWorker:
    def __init__(self, threads: int) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="tsuzuki-device",
            initializer=configure_torch,
            initargs=(threads,),
        )

    async def run(self, fn: Callable[..., T], /, *args: object) -> T:
        """Runs fn(*args) on the device thread and waits for it without blocking."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args))

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
