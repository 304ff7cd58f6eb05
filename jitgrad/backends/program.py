"""What ``jg.compile`` needs from a backend: the ``Program`` protocol.

A backend is a class built from a ``Lowered`` schedule (and the compile
options) that implements this protocol explicitly; ``Executable`` uses nothing
else of it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..entry import Entry


@runtime_checkable
class Program(Protocol):
    takes_scalars: bool         # 0-d float arguments may arrive as Python floats
    source: str | None          # the generated source that runs; None for an interpreter

    def entry(self, fixed: list, single: bool) -> Entry | None:
        """A faster entry (``jitgrad.entry``) for calls whose arguments have exactly the
        ``fixed`` (dtype, shape) of each input, handing any other call to the full checks; None
        if the backend has none.  It assigns the params' new values and returns what the
        function's call returns: the output if ``single``, else the tuple of outputs."""

    def __call__(self, args: list, sizes: dict) -> list:
        """Run on checked arguments and the params' current states; returns the outputs,
        then the params' new values."""

    def profile(self, args: list, sizes: dict, repeat: int):
        """``repeat`` calls on checked arguments, each step timed, no update applied: a
        ``jitgrad.debug.Profile``."""
