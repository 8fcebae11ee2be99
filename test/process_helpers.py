"""Shared by tests that stop a running tool: start it, signal it once it is working."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


def interrupt(command: list, cwd: Path, signum: int, ready) -> tuple[int, str]:
    """Starts `command`, sends it `signum` once `ready(process)` holds, and returns its exit
    code and stderr."""
    # A runner may ignore SIGINT (pytest-xdist's workers do) and a child inherits that; a tool
    # started so keeps ignoring it, as shells expect of background jobs. Start it as a terminal would.
    process = subprocess.Popen([str(Path(sys.executable).parent / command[0]), *map(str, command[1:])], cwd=cwd,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not ready(process):
        assert process.poll() is None, f"{command[0]} ended before the signal: {process.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.2)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


def after(seconds: float):
    start = time.monotonic()
    return lambda process: time.monotonic() - start > seconds
