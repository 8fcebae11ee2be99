"""Memory read bandwidth of this machine, measured now (it moves with the load of a shared machine).

Two threads each OR-reduce half of a ~1 GiB uint64 buffer (numpy releases the GIL in
reductions), as TOOLCHAIN.md measured it: a read-only stream, the access pattern of a
decode step that reads every weight once. Of a few repetitions the fastest counts:
slower ones are interference, and the probe asks what the memory system can deliver.

    .venv/bin/python -m bench.bandwidth      # prints one measurement
"""

from __future__ import annotations

import threading
import time

import numpy as np


class BandwidthProbe:
    """A buffer allocated and touched once; `measure()` reads all of it with `threads` threads."""

    def __init__(self, gib: float = 1.0, threads: int = 2):
        words = int(gib * 2**30) // 8
        self.buffer = np.ones(words, np.uint64)  # written once, so every page is resident
        self.threads = threads

    @property
    def nbytes(self) -> int:
        return self.buffer.nbytes

    def _read_once(self) -> float:
        chunks = np.array_split(self.buffer, self.threads)
        results = [None] * self.threads

        def reduce(i: int) -> None:
            results[i] = np.bitwise_or.reduce(chunks[i])

        workers = [threading.Thread(target=reduce, args=(i,)) for i in range(self.threads)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        seconds = time.perf_counter() - start
        assert all(r == 1 for r in results)  # the reduction really read the data
        return self.nbytes / seconds / 1e9

    def measure(self, repeats: int = 3) -> float:
        """Read bandwidth in GB/s (10^9 bytes/s): the fastest of `repeats` full reads."""
        return max(self._read_once() for _ in range(repeats))


if __name__ == "__main__":
    for threads in (1, 2):
        print(f"{threads} thread(s): {BandwidthProbe(threads=threads).measure():.1f} GB/s")
