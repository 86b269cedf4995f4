"""Finding an object by its ``module:attribute`` name, as ``--app`` and the like take it."""

from __future__ import annotations

import importlib
import sys

from ._errors import AcidicError

__all__ = ["import_target"]


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
        raise AcidicError(f"cannot import {module_name!r} for {option}: {exc}") from exc
    for part in attribute.split("."):
        missing = object()
        found = getattr(found, part, missing)
        if found is missing:
            raise AcidicError(f"{option}: module {module_name!r} has no attribute {attribute!r}")
    return found
