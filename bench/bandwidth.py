"""Memory read bandwidth of this machine, measured now (it moves with the load of a shared machine).

Two readers stream a ~1 GiB buffer with `threads` threads, each read once per repetition:
* an f32 matrix-vector product (PyTorch's sgemv) over the buffer viewed as [rows, 2048]:
  the access pattern of a decode step, which reads every weight once. Its hardware
  prefetching gets more out of the memory system than a plain reduction (on this machine
  about 25 GB/s against 17), and torch's own f32 decode reaches that rate: a probe below it
  would put engines above 100% of their roofline;
* numpy OR-reductions of uint64 halves in two threads (numpy releases the GIL), as
  docs/toolchain.md records.
The fastest read of either counts: slower ones are interference, and the probe asks what the
memory system can deliver.

    .venv/bin/python -m bench.bandwidth      # prints one measurement per reader
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

GEMV_COLUMNS = 2048
ONE_ONE = 0x3F800000_3F800000  # two f32 1.0


class BandwidthProbe:
    """A buffer allocated and touched once; `measure()` reads all of it with `threads` threads."""

    def __init__(self, gib: float = 1.0, threads: int = 2):
        words = int(gib * 2**30) // 8 // GEMV_COLUMNS * GEMV_COLUMNS
        # Written once, so every page is resident; each uint64 is two f32 1.0 (a denormal
        # pattern would make the gemv compute-bound).
        self.buffer = np.full(words, ONE_ONE, np.uint64)
        self.threads = threads
        self._matrix = torch.from_numpy(self.buffer.view(np.float32).reshape(-1, GEMV_COLUMNS))
        self._vector = torch.ones(GEMV_COLUMNS)

    @property
    def nbytes(self) -> int:
        return self.buffer.nbytes

    def _timed(self, read) -> float:
        start = time.perf_counter()
        read()
        return self.nbytes / (time.perf_counter() - start) / 1e9

    def _or_reduce(self) -> None:
        chunks = np.array_split(self.buffer, self.threads)
        results = [None] * self.threads

        def reduce(i: int) -> None:
            results[i] = np.bitwise_or.reduce(chunks[i])

        workers = [threading.Thread(target=reduce, args=(i,)) for i in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert all(r == ONE_ONE for r in results)  # the reduction really read the data

    def _gemv(self) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            torch.mv(self._matrix, self._vector)
        finally:
            torch.set_num_threads(threads)

    def readers(self, repeats: int = 3) -> dict[str, float]:
        """GB/s (10^9 bytes/s) of each reader: the fastest of `repeats` full reads."""
        return {
            "torch f32 gemv": max(self._timed(self._gemv) for _ in range(repeats)),
            "numpy uint64 OR-reduce": max(self._timed(self._or_reduce) for _ in range(repeats)),
        }

    def measure(self, repeats: int = 3) -> float:
        """Read bandwidth in GB/s: the fastest read of any reader."""
        return max(self.readers(repeats).values())


if __name__ == "__main__":
    for threads in (1, 2):
        rates = BandwidthProbe(threads=threads).readers()
        print(f"{threads} thread(s): " + ", ".join(f"{name} {rate:.1f} GB/s" for name, rate in rates.items()))
