"""The public surface of ``acidic.http`` and its framework helpers: ``__all__`` (complete,
sorted, documented) and their errors in acidic's error tree."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import types
from pathlib import Path
from typing import Any

import pytest

import acidic
import acidic.http
from acidic import _errors

DOCS = Path(__file__).parents[2] / "docs" / "http.md"
MODULES = ["acidic.http", "acidic.http.fastapi", "acidic.http.flask"]
# A line of the tree in acidic/_errors.py that names an error of acidic.http.
HTTP_TREE_LINE = re.compile(
    r"^(?P<lead>[ │]*[├└]── )acidic\.http\.(?P<name>\w+Error)\b(?P<rest>.*)$", re.MULTILINE
)


def _reference() -> str:
    """The Reference section of docs/http.md."""
    text = DOCS.read_text("utf-8")
    return text[text.index("\n## Reference") : text.index("\n## Not supported")]


def _own_docstring(obj: Any) -> str | None:
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    if not isinstance(doc, str) or not doc.strip():
        return None
    if isinstance(obj, type) and doc.startswith(f"{obj.__name__}("):
        return None  # the signature dataclasses invent for an undocumented class
    return doc


def _public_bindings(module: types.ModuleType) -> set[str]:
    """The public names a module binds: its imports too for a package's __init__ (that
    is how it exports), only what it defines for the other modules."""
    source = inspect.getsource(module)
    is_package = hasattr(module, "__path__")
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and is_package and node.module != "__future__":
            names.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("name", MODULES)
def test_all__is_sorted_complete_and_from_acidic_http(name: str) -> None:
    module = importlib.import_module(name)
    names = module.__all__
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    assert _public_bindings(module) == set(names)
    for attr in names:
        assert getattr(module, attr).__module__.startswith("acidic.http"), attr


def test_all__holds_what_users_need_and_no_helper() -> None:
    assert acidic.http.__all__ == [
        "Idempotency",
        "IdempotencyMiddleware",
        "IdempotencyWSGIMiddleware",
        "IdempotentRequest",
        "MissingKeyError",
        "RequestInfo",
        "idempotent_request",
    ]


@pytest.mark.parametrize("name", MODULES)
def test_all__every_name_is_documented_in_code_and_in_the_reference(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__doc__
    reference = _reference()
    for attr in module.__all__:
        obj = getattr(module, attr)
        if callable(obj) and not hasattr(obj, "__metadata__"):  # Annotated aliases excepted
            assert _own_docstring(obj), f"{name}.{attr}"
        named = f"`{attr}" if name == "acidic.http" else f"`{name}.{attr}"
        assert named in reference, f"{name}.{attr}"


def test_public_classes__members_have_docstrings() -> None:
    undocumented = []
    for attr in acidic.http.__all__:
        cls = getattr(acidic.http, attr)
        if not isinstance(cls, type):
            continue
        for member_name, value in vars(cls).items():
            member = value.__func__ if isinstance(value, classmethod | staticmethod) else value
            is_routine = isinstance(member, property) or inspect.isfunction(member)
            if is_routine and not member_name.startswith("_") and not (member.__doc__ or ""):
                undocumented.append(f"{attr}.{member_name}")
    assert undocumented == []


def _http_exceptions() -> dict[str, type[BaseException]]:
    """Every exception class defined in a module of acidic.http, private ones too."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.iter_modules(acidic.http.__path__, "acidic.http."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, BaseException)
                and obj.__module__ == info.name
            ):
                found[obj.__name__] = obj
    return found


def test_errors__every_error_of_acidic_http_is_an_acidic_error() -> None:
    errors = _http_exceptions()
    assert {"MissingKeyError", "InvalidKeyHeaderError"} <= set(errors)
    assert [n for n, cls in errors.items() if not issubclass(cls, acidic.AcidicError)] == []


def test_errors__the_public_ones_are_drawn_in_acidic_s_error_tree() -> None:
    """The tree of acidic/_errors.py draws them as ``acidic.http.<Name>``, as children
    of AcidicError, with the builtin bases they have."""
    doc = _errors.__doc__ or ""
    drawn = {m["name"]: m for m in HTTP_TREE_LINE.finditer(doc)}
    public = {
        attr
        for module in MODULES
        for attr in importlib.import_module(module).__all__
        if isinstance(obj := getattr(importlib.import_module(module), attr), type)
        and issubclass(obj, BaseException)
    }
    assert set(drawn) == public
    root = next(line for line in doc.splitlines() if line.strip() == "AcidicError")
    for name, match in drawn.items():
        cls = getattr(acidic.http, name)
        assert len(match["lead"]) == len(root) - len(root.lstrip()) + 4  # a child of the root
        assert [b.__name__ for b in cls.__bases__ if issubclass(b, acidic.AcidicError)] == [
            "AcidicError"
        ]
        builtin = {b.__name__ for b in cls.__bases__ if not issubclass(b, acidic.AcidicError)}
        assert builtin == set(re.findall(r"\balso an? (\w+)", match["rest"]))
