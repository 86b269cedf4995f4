"""Finding an object by its ``module:attribute`` name, as ``--app`` and the like take it."""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
import traceback

from ._errors import AcidicError

__all__ = ["TargetImportError", "import_target"]


class TargetImportError(AcidicError):
    """The module named by a ``module:attribute`` target raised while it was imported;
    the message names the error and where it was raised, ``__cause__`` is the error."""


def import_target(target: str, option: str) -> object:
    """The object named ``module:attribute`` (the attribute may be dotted); the current
    directory is importable, as it is for ``python -m``. ``option`` names what asked for
    it in errors (``--app``)."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise AcidicError(f"{option} takes module:attribute, not {target!r}")
    if "" not in sys.path:
        sys.path.insert(0, "")
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as exc:
        if not _raised_inside(exc, module_name):
            raise AcidicError(f"cannot import {module_name!r} for {option}: {exc}") from exc
        raise TargetImportError(_failure(module_name, option, exc)) from exc
    except Exception as exc:  # the module's own code failed: its error, not a traceback
        raise TargetImportError(_failure(module_name, option, exc)) from exc
    for part in attribute.split("."):
        missing = object()
        found = getattr(found, part, missing)
        if found is missing:
            raise AcidicError(f"{option}: module {module_name!r} has no attribute {attribute!r}")
    return found


def _raised_inside(exc: ImportError, module_name: str) -> bool:
    """Whether ``exc`` comes from the code of the module (or its packages) rather than
    from the module itself not being found."""
    parts = module_name.split(".")
    searched = {".".join(parts[: i + 1]) for i in range(len(parts))}
    return not (isinstance(exc, ModuleNotFoundError) and exc.name in searched)


def _failure(module_name: str, option: str, exc: BaseException) -> str:
    # A SyntaxError's str() repeats the file and line, named here anyway.
    text = exc.msg if isinstance(exc, SyntaxError) else str(exc)
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    where = _origin(exc)
    at = f" at {where}" if where else ""
    return f"importing {module_name!r} for {option} failed{at}: {what}"


def _origin(exc: BaseException) -> str | None:
    """``file, line N`` where ``exc`` was raised: the innermost line of the user's code
    (not of a library it called, nor of Python's import machinery)."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{_shown(exc.filename)}, line {exc.lineno}"
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith("<") and f.filename != __file__
    ]
    if not frames:
        return None
    libraries = _library_dirs()
    own = [f for f in frames if not f.filename.startswith(libraries)]
    frame = (own or frames)[-1]
    return f"{_shown(frame.filename)}, line {frame.lineno}"


def _library_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    dirs = {paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib") if name in paths}
    dirs.add(os.path.dirname(os.path.abspath(__file__)))  # acidic itself
    return tuple(os.path.join(d, "") for d in dirs)


def _shown(path: str) -> str:
    """``path`` relative to the current directory when it is below it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        return path
    return path if relative.startswith(os.pardir) else relative
