"""A content-addressed cache of IREE-compiled modules.

The key is the SHA-256 of the MLIR text, the compiler flags, the IREE compiler version
and the host (its CPU features, which `--iree-llvmcpu-target-cpu=host` compiles for, and
the C kernel object a module with custom dispatches links), so a second `harden-run` of
the same module on the same machine loads the flatbuffer instead of compiling again, and a
cache shared between machines never hands one CPU's code to another. Each entry carries
the SHA-256 of its own bytes: a corrupt or partial entry is detected, dropped and recompiled.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harden.core.files import write_atomically


def default_cache_dir() -> Path:
    """$HARDEN_CACHE_DIR, else $XDG_CACHE_HOME/harden, else ~/.cache/harden."""
    if os.environ.get("HARDEN_CACHE_DIR"):
        return Path(os.environ["HARDEN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "harden"


def _iree_compiler_version() -> str:
    from importlib.metadata import version

    return version("iree-base-compiler")


def _host_identity(mlir_text: str) -> str:
    """What the flatbuffer depends on besides the text and flags: the CPU's feature flags and,
    for a module calling the C kernels, the digest of the object it links."""
    from harden.backend.custom_dispatch import has_custom_dispatches
    from harden.kernels.contract import cpu_flags, kernel_build

    parts = [" ".join(sorted(cpu_flags()))]
    build = kernel_build()
    if has_custom_dispatches(mlir_text) and build is not None and build[0].is_file():
        parts.append(hashlib.sha256(build[0].read_bytes()).hexdigest())
    return "\0".join(parts)


@dataclass
class CompileCache:
    directory: Path

    def key(self, mlir_text: str, flags: Sequence[str]) -> str:
        h = hashlib.sha256()
        for part in (_iree_compiler_version(), "\0".join(flags), _host_identity(mlir_text), mlir_text):
            h.update(part.encode())
            h.update(b"\0")
        return h.hexdigest()

    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.directory / f"{key}.vmfb", self.directory / f"{key}.sha256"

    def load(self, key: str) -> bytes | None:
        """The cached flatbuffer, or None if absent or corrupt (a corrupt entry is removed)."""
        module, digest = self._paths(key)
        if not module.exists() or not digest.exists():
            return None
        data = module.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest.read_text().strip():
            module.unlink(missing_ok=True)
            digest.unlink(missing_ok=True)
            return None
        return data

    def store(self, key: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        module, digest = self._paths(key)
        write_atomically(module, data)
        write_atomically(digest, hashlib.sha256(data).hexdigest() + "\n")

    def get_or_compile(self, mlir_text: str, flags: Sequence[str], compile_fn: Callable[[], bytes]) -> tuple[bytes, bool]:
        """(flatbuffer, hit): loads the entry for this text and flags, or compiles and stores it."""
        key = self.key(mlir_text, flags)
        cached = self.load(key)
        if cached is not None:
            return cached, True
        data = compile_fn()
        self.store(key, data)
        return data, False
