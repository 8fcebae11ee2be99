"""Signs of life on long work: progress bars and live stage lines on a terminal.

Import, pipeline stages, IREE compilation, sensitivity, QAT and the benchmark report here.
Everything goes to stderr and only when stderr is a terminal; with `set_quiet(True)` (the
tools' `--quiet`) or when stderr is a file or a pipe (tests, CI, logs) nothing is printed,
so captured output stays clean.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from tqdm import tqdm

_quiet = False


def set_quiet(quiet: bool) -> None:
    """Silences every progress display of this process (the tools' --quiet)."""
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    """Whether progress is shown: stderr is a terminal and --quiet was not given."""
    return not _quiet and sys.stderr.isatty()


def bar(iterable: Iterable | None = None, *, desc: str, total: int | None = None, unit: str = "it") -> tqdm:
    """A tqdm bar on stderr that disappears when done (or a silent pass-through)."""
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, leave=False, disable=not enabled(), dynamic_ncols=True)


@contextmanager
def stage(what: str) -> Iterator[None]:
    """A live line `what ... 12 s` while the block runs, then `what ... done in 12.3 s`
    (or `failed after`). For work with no natural unit to count (a compile, a pass)."""
    if not enabled():
        yield
        return
    start, done = time.perf_counter(), threading.Event()

    def tick() -> None:
        while not done.wait(0.5):
            print(f"\r{what} ... {time.perf_counter() - start:.0f} s", end="", file=sys.stderr, flush=True)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    outcome = "failed after"
    try:
        yield
        outcome = "done in"
    finally:
        done.set()
        ticker.join()
        print(f"\r\033[K{what} ... {outcome} {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
