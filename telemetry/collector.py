"""When CPython's cyclic garbage collector runs: not while the function works.

Importing the function and building its runtime allocate tens of thousands of
long-lived objects (modules, classes, botocore's service models and clients)
and next to no garbage, yet the collector walks them again and again while
they are made: about a fifth of a cold start's CPU, which Lambda bills
(benchmarks/bench_coldstart.py). An invocation allocates readings, records and
requests that reference counting frees as soon as they are done with; the few
cycles among them (a 10,000-message batch leaves about 2,000 objects) can wait
for the end of the invocation, and the collector's hundreds of passes over
the batch cost more than they free (benchmarks/bench_stream_cpu.py).

So the collector is off from the moment `telemetry.handler` starts importing
(this module is its first import) until that import is done, while a runtime
is built, and during each invocation; it runs as usual in between. After the
first runtime of the process is built, everything alive is frozen
(`gc.freeze`): later collections no longer walk the runtime. Reference
counting frees memory meanwhile as always; only cyclic garbage waits.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_COLLECTING_BEFORE_IMPORT = gc.isenabled()
gc.disable()
_frozen = False


def imported() -> None:
    """The handler's imports are done: collect again, if the process did before."""
    if _COLLECTING_BEFORE_IMPORT:
        gc.enable()


@contextmanager
def paused() -> Iterator[None]:
    """No collection inside the block; the collector's state is restored after."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def freeze_once() -> None:
    """Move everything alive out of the collector's view, the first time only:
    the first runtime lives as long as the process. (Freezing again on every
    rebuild, which tests and local runs do, would keep their garbage forever.)"""
    global _frozen  # noqa: PLW0603 - once per process
    if not _frozen:
        _frozen = True
        gc.freeze()
