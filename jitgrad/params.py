"""Params on disk: ``jg.save_params`` and ``jg.load_params``.

A checkpoint is an ``.npz`` file holding one array per param, keyed by the
param's name.  Saving writes a temporary file beside the target and renames it
over the target, so a crash mid-save leaves the old checkpoint (or none), never
half of one.  Loading checks every name, shape and dtype before it sets any
value, so a mismatched checkpoint raises and changes nothing.
"""
from __future__ import annotations

import os
import tempfile
import zipfile

import numpy as np

from .graph import Tensor

__all__ = ["save_params", "load_params", "params_of"]


def params_of(source) -> list[Tensor]:
    """The params of a compiled function (``jg.compile``'s result), or a list of params."""
    found = getattr(source, "params", None)
    params = list(found) if found is not None else (
        [source] if isinstance(source, Tensor) else list(source))
    for p in params:
        if not isinstance(p, Tensor) or not p.is_param:
            raise TypeError(f"expected params (jg.param Tensors) or a compiled function, got {p!r}")
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"two different params are named {twice}: a checkpoint keys them by name")
    return params


def save_params(path, source) -> None:
    """Write the current values of ``source``'s params to ``path`` (.npz), atomically."""
    params = params_of(source)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".params-", suffix=".npz.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **{p.name: p.value for p in params})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_params(path, source, strict: bool = True) -> None:
    """Set ``source``'s params from the checkpoint at ``path``.

    Every param must be in the file with its exact shape and dtype; with
    ``strict`` the file may not hold other arrays either.  All of it is checked
    before the first value is set.
    """
    params = params_of(source)
    path = os.fspath(path)
    try:
        # allow_pickle=False: a pickle (raw, a pickled .npy or an object array inside the
        # archive) raises ValueError instead of being unpickled; nothing from the file runs.
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds one array, not an .npz archive")
        with archive:
            stored = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"load_params: {path!r} is not a readable params checkpoint ({e})") from e
    problems = []
    for p in params:
        if p.name not in stored:
            problems.append(f"{p.name!r} is missing")
            continue
        value = stored[p.name]
        if value.shape != p.shape or value.dtype != p.dtype:
            problems.append(f"{p.name!r} is {value.dtype}{list(value.shape)} in the file, "
                            f"{p.dtype}{list(p.shape)} in the graph")
    if strict:
        extra = sorted(set(stored) - {p.name for p in params})
        problems += [f"{name!r} is in the file but not among the params" for name in extra]
    if problems:
        raise ValueError(f"load_params: {path!r} does not match the params: " + "; ".join(problems))
    for p in params:
        p.value = stored[p.name]
