"""Small helpers for the bulk paths (register import, matcher compilation)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def no_cycle_collection() -> Iterator[None]:
    """Pause the cyclic garbage collector around bulk work that builds no reference cycles.

    Millions of new dicts and tuples would otherwise trigger collections that walk every
    live object again and again (15–25% of an import or a 1M-rule compile); reference
    counting still frees everything. The previous state is restored afterwards.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
