"""The on-disk cache of compiled code, from the command line.

``python -m jitgrad.cache info`` prints where the cache is, how many entries it holds, its size
and its cap; ``python -m jitgrad.cache clear`` deletes every entry (safe while other processes
run: they recompile what they load next). The same from Python: :func:`info` and :func:`clear`.

The cache lives in ``JITGRAD_CACHE_DIR`` (default ``~/.cache/jitgrad``) and is capped at
``JITGRAD_CACHE_MAX_MB`` megabytes (default 1024; ``0`` for no cap): after a write takes it over
the cap, the least recently used entries are evicted down to 80 % of it.

>>> sorted(info())
['bytes', 'directory', 'entries', 'max_bytes']
"""
from __future__ import annotations

import argparse

from .backends.cache import cache_info as info
from .backends.cache import clear_cache as clear

__all__ = ["clear", "info", "main"]


def _megabytes(nbytes: int | None) -> str:
    return "none" if nbytes is None else f"{nbytes / 2**20:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m jitgrad.cache {info,clear}``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m jitgrad.cache", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["info", "clear"], nargs="?", default="info")
    command = parser.parse_args(argv).command
    if command == "clear":
        entries, removed = clear()
        print(f"removed {entries} entries, {_megabytes(removed)}")
    else:
        state = info()
        print(f"directory: {state['directory']}\nentries:   {state['entries']}\n"
              f"size:      {_megabytes(state['bytes'])}\ncap:       {_megabytes(state['max_bytes'])}"
              " (JITGRAD_CACHE_MAX_MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
