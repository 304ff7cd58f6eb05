"""Where each graph node was built: the user's lines, recorded by ``bind`` in debug mode only.

A node does not know the line that built it: recording a traceback per node would slow every
graph down. In debug mode (``JITGRAD_DEBUG_NANS=1`` in the environment when jitgrad is
imported, or graphs built inside ``with jg.debug_nans():``) ``graph.bind`` records a short
creation traceback for each node: up to ``FRAMES`` frames outside the jitgrad package,
innermost first. The record lives in a side table keyed by the node's serial number, not in
the node, so normal mode costs one flag test per node. Lowering passes it on to the
schedule's variables (``link``), which is what a NaN report names.

>>> import jitgrad as jg
>>> from jitgrad.provenance import site_of
>>> with jg.debug_nans():
...     x = jg.input("x", (3,))
...     y = jg.log(x)
>>> site_of(y).frames[0][1:]         # (file, line, function) of the line that built y
(3, '<module>')
"""
from __future__ import annotations

import contextlib
import linecache
import os
import sys
import sysconfig
import threading
import weakref
from dataclasses import dataclass

FRAMES = 3                  # frames kept per node: the building line and its callers

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_LIBRARIES = tuple({os.path.join(sysconfig.get_paths()[k], "") for k in ("stdlib", "purelib", "platlib")}) \
    + ("<frozen ",)     # callers there (pytest, runpy) are left out of a site
_REWRITE = os.path.join(_PACKAGE, "rewrite.py")    # rebuilds nodes: they inherit the old node's site


def environment_asks() -> bool:
    """Whether ``JITGRAD_DEBUG_NANS`` is set (to anything but 0/false/no/off)."""
    return os.environ.get("JITGRAD_DEBUG_NANS", "").lower() not in ("", "0", "false", "no", "off")


recording = environment_asks()     # graph.bind tests this flag on every node; nothing else
_depth = 0                         # open ``debug_nans()`` blocks (process-wide)
_lock = threading.Lock()
_sites: dict[int, Site] = {}       # node serial -> where it was built (debug mode only)
_var_sites: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()    # schedule Var -> Site


@dataclass(frozen=True)
class Site:
    """A node's creation traceback: ``frames`` are (file, line, function), innermost first."""

    frames: tuple

    def format(self, indent: str = "  ") -> str:
        """The frames as Python prints a traceback (outermost first), with their source lines."""
        lines = []
        for filename, lineno, function in reversed(self.frames):
            lines.append(f'{indent}File "{filename}", line {lineno}, in {function}')
            text = linecache.getline(filename, lineno).strip()
            if text:
                lines.append(f"{indent}  {text}")
        return "\n".join(lines)

    def __str__(self) -> str:
        filename, lineno, function = self.frames[0]
        return f"{filename}:{lineno} in {function}"


def active() -> bool:
    """Whether graphs built now record their sites (and ``jg.compile`` checks for NaN by default)."""
    return recording or environment_asks()


@contextlib.contextmanager
def debug_nans():
    """Record, for every node built inside the block, the line of code that built it, so that
    ``jg.compile(..., debug_nans=True)`` can name it; functions compiled inside the block check
    for NaN by default. Process-wide (other threads' graphs are recorded too)."""
    global recording, _depth
    with _lock:
        _depth += 1
        recording = True
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            recording = _depth > 0 or environment_asks()


def record(node) -> None:
    """Called by ``bind`` in debug mode: note the frames outside jitgrad that built ``node``.
    Nodes that ``rewrite`` rebuilds get no site of their own: they inherit the original's."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        if frame.f_code.co_filename == _REWRITE:
            return
        frame = frame.f_back
    frames = []                     # the building line, then its callers outside any library
    while frame is not None and len(frames) < FRAMES:
        code = frame.f_code
        if not code.co_filename.startswith(_PACKAGE) and not (frames and code.co_filename.startswith(_LIBRARIES)):
            frames.append((code.co_filename, frame.f_lineno, code.co_name))
        frame = frame.f_back
    if frames:
        _sites[node.serial] = Site(tuple(frames))


def inherit(new, old) -> None:
    """``new`` (rebuilt by a rewrite) stands for ``old``: give it ``old``'s site if it has none."""
    site = _sites.get(old.serial)
    if site is not None:
        _sites.setdefault(new.serial, site)


def site_of(node) -> Site | None:
    """Where ``node`` was built, if it was built in debug mode."""
    return _sites.get(node.serial)


def link(var, node) -> None:
    """Lowering named ``node`` ``var``: the variable takes the node's site (if any)."""
    site = _sites.get(node.serial)
    if site is not None:
        _var_sites[var] = site


def site_of_var(var) -> Site | None:
    """Where the node computed into schedule variable ``var`` was built, if recorded."""
    return _var_sites.get(var)
