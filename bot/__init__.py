"""Tsuzuki (続き): a chat bot that writes in the voice of a channel."""

import os

# OpenMP reads its wait policy once, when torch is first imported, so it must be set
# before any torch import. With the default (busy-waiting) threads, a 2-core machine
# that also runs the event loop and tokenizers was seen decoding 15x slower: spinning
# OpenMP workers steal the cores the other threads need. PASSIVE makes them sleep.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The Rust tokenizers' own thread pool would compete with torch for the same cores.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
