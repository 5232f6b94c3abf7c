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
is built, and during each invocation; it runs as usual in between. What the
import made, and the first runtime the process builds, are frozen (`gc.freeze`)
before collection resumes: later collections never walk them. Reference
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
    """The handler's imports are done: freeze what they made, then collect again
    if the process did before. (Re-enabling first would make the next allocation
    walk every object the import made: tens of milliseconds, for nothing.)"""
    gc.freeze()
    if _COLLECTING_BEFORE_IMPORT:
        gc.enable()


@contextmanager
def paused(*, built: bool = False) -> Iterator[None]:
    """No collection inside the block; the collector's state is restored after.
    With `built`, the block built the runtime: the first time in the process,
    what it made is frozen before collection resumes (the first runtime lives as
    long as the process; freezing on every rebuild, which tests and local runs do,
    would keep their garbage forever)."""
    global _frozen  # noqa: PLW0603 - once per process
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if built and not _frozen:
            _frozen = True
            gc.freeze()
        if was_on:
            gc.enable()
