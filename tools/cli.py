"""What every harden command line shares: one-line errors, safe output files."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from harden.core.files import write_atomically


class CommandError(Exception):
    """A user-facing failure: printed as one line `tool: error: message`, then exit `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors and a chosen exit code."""

    def __init__(self, *args, usage_exit_code: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.usage_exit_code = usage_exit_code

    def error(self, message: str):
        raise CommandError(message, self.usage_exit_code)


class Terminated(BaseException):
    """SIGTERM, raised like KeyboardInterrupt so every atomic write removes its temporary file."""


def _terminate(signum, frame):
    raise Terminated()


def _redeliver(hook_args, fallback) -> None:
    """sys.unraisablehook while a command runs: a signal's exception raised where Python
    can only print it (a weakref callback during an import, when SIGTERM or SIGINT arrives
    in the first seconds) is delivered again, so it stops the work instead of vanishing."""
    signum = {Terminated: signal.SIGTERM, KeyboardInterrupt: signal.SIGINT}.get(type(hook_args.exc_value))
    if signum is None:
        fallback(hook_args)
    else:  # from another thread, a moment later: raised in this hook it would vanish again
        threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()


def run_command(tool: str, body) -> int:
    """Runs `body()`; a CommandError becomes one line on stderr and its exit code. SIGINT and
    SIGTERM stop the work with one line and exit 130 or 143 (128 + the signal), after the
    atomic writes in progress have removed their temporary files."""
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    unraisable = sys.unraisablehook
    if previous is not None:
        sys.unraisablehook = lambda hook_args: _redeliver(hook_args, unraisable)
    try:
        return body() or 0
    except CommandError as e:
        print(f"{tool}: error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print(f"{tool}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{tool}: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        # The reader of stdout went away (`harden-opt m.mlir | head`): stop quietly, as
        # mlir-opt does on SIGPIPE; stdout goes to /dev/null so the exit flush cannot fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        # The system refused a read or write (disk full, permission, a vanished file): one
        # line naming the file, as for any other bad input; a bug is not an OSError.
        where = f"'{e.filename}': " if e.filename else ""
        print(f"{tool}: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
            sys.unraisablehook = unraisable


def check_output_path(output: str | None, inputs: list[str]) -> None:
    """Refuses, before any work, an output whose directory is missing or that is one of
    the inputs (never overwrite an input)."""
    if not output or output == "-":
        return
    if not Path(output).parent.exists():
        raise CommandError(f"cannot write '{output}': directory '{Path(output).parent}' does not exist")
    out = Path(output).resolve()
    for path in inputs:
        if path != "-" and Path(path).exists() and Path(path).resolve() == out:
            raise CommandError(f"output '{output}' is the input file; refusing to overwrite it")


def write_output(path: str, data: str | bytes) -> None:
    """Writes `data` to stdout (`-`) or atomically to a file: readers never see a partial file."""
    if path == "-":
        if isinstance(data, bytes):
            sys.stdout.buffer.write(data)
        else:
            sys.stdout.write(data)
        sys.stdout.flush()
        return
    target = Path(path)
    if not target.parent.exists():
        raise CommandError(f"cannot write '{path}': directory '{target.parent}' does not exist")
    if target.is_dir():
        raise CommandError(f"cannot write '{path}': is a directory")
    write_atomically(target, data)
