"""Writing files so that readers never see a partial one, and no temporary file is left behind.

Every output of harden (MLIR, parameter files, checkpoints, reports, the compile cache) is
written to a temporary name beside its target and renamed into place only once complete.
If the writer fails or is interrupted, the temporary file (or directory) is removed.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _default_mode(directory: bool) -> int:
    """The permissions a plain `open` (or `mkdir`) gives under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


@contextmanager
def atomic_path(path: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yields a temporary path beside `path` to write to (a file, or with `directory` an
    empty directory); on success it is renamed to `path`, on any failure removed.

    A directory target must not exist or be empty (a rename cannot replace a full one)."""
    target = Path(path)
    if directory:
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    else:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _default_mode(directory))
        os.replace(tmp, target)
    except BaseException as e:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        full = storage_full(e, target)
        if full:
            raise full from e
        raise


def storage_full(e: BaseException, target: str | Path) -> OSError | None:
    """For a write that storage refused (disk full, quota exceeded, file size limit), the same
    error naming `target`: it surfaces in a write to an open file, which names no file, and
    the temporary name would mean nothing to the user. None for any other error."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return OSError(e.errno, os.strerror(e.errno), str(target))
    return None


def write_atomically(path: str | Path, data: str | bytes) -> None:
    """Writes `data` to `path` through `atomic_path`; a device or pipe that is already there
    (`/dev/null`, `/dev/stdout`) is written through instead: renaming a file into its place
    would replace the device node itself."""
    target = Path(path)
    if target.exists() and not target.is_file() and not target.is_dir():
        with open(target, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        return
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data)
