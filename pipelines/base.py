"""What a named pipeline is: typed options (like a pass) that expand to ordered steps."""

from __future__ import annotations

from dataclasses import dataclass

from harden.core.pass_base import Configurable, Pass


@dataclass(frozen=True)
class Pipeline(Configurable):
    """A named, ordered list of passes; its options are passed through to them."""

    def steps(self) -> list[Pass | str]:
        """Harden pass objects and upstream pipeline text, in order."""
        raise NotImplementedError
