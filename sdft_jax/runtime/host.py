"""The host's small duties in a multi-process run: who prints, who writes first."""
from __future__ import annotations

from typing import Callable

import jax
from jax.experimental import multihost_utils


def say(msg: str) -> None:
    if jax.process_index() == 0:
        print(f"[sdft_jax] {msg}", flush=True)


def process0_first(name: str, fn: Callable):
    """Runs fn on process 0, then on the others (which find its files): no two processes write the
    same folder at once."""
    if jax.process_count() == 1:
        return fn()
    out = fn() if jax.process_index() == 0 else None
    multihost_utils.sync_global_devices(f"sdft_jax:{name}")
    return out if jax.process_index() == 0 else fn()
