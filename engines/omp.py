"""OpenMP thread pools: give back the one a thread built when it ran torch work, so the next thread runs at full speed.

GNU OpenMP (torch's CPU builds on Linux) keeps a pool of worker threads for every thread that ever ran a parallel
torch operation. Once the pools together hold more threads than there are cores, every pool's workers stop spinning
between operations and sleep instead, and each parallel operation pays to wake them: on this project's 2-core machine
a 2-block `bmm` went from 40 to 100 microseconds, the embedded chat model's decoding step from 35 to 45 ms. Loading a
model runs parallel work on whichever thread loads it (the start-up thread, a gradio worker), so the loading thread
gives its pool back afterwards and the model's own worker (the batch) keeps the only one.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

OMP_PAUSE_SOFT = 1


@functools.cache
def _libgomp():
    import torch

    for path in sorted((Path(torch.__file__).parent / "lib").glob("libgomp*.so*")):
        try:
            return ctypes.CDLL(str(path))
        except OSError:  # pragma: no cover - a broken install
            continue
    return None


def release_thread_pool() -> bool:
    """Free the calling thread's OpenMP worker threads (rebuilt if it runs parallel work again); False if it cannot."""
    lib = _libgomp()
    if lib is None or not hasattr(lib, "omp_pause_resource_all"):
        return False
    return lib.omp_pause_resource_all(OMP_PAUSE_SOFT) == 0
