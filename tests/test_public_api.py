"""The public surface of ``acidic``: ``__all__``, docstrings and the error hierarchy."""

from __future__ import annotations

import ast
import builtins
import inspect
import re
import types
from importlib import resources
from typing import Any

import acidic
from acidic import _errors

# A line of the tree drawn in acidic/_errors.py: "├── Name   what it means (also a X)".
TREE_LINE = re.compile(r"^(?P<lead>[ │]*(?:[├└]── )?)(?P<name>[A-Z]\w*Error|Retry)\b(?P<rest>.*)$")


def _init_names() -> set[str]:
    """The names bound at module level in acidic/__init__.py."""
    source = resources.files("acidic").joinpath("__init__.py").read_text("utf-8")
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
    return names


def _documented_tree() -> dict[str, tuple[str | None, set[str]]]:
    """The tree of _errors' docstring: name -> (documented parent, documented builtin bases)."""
    assert _errors.__doc__ is not None
    tree: dict[str, tuple[str | None, set[str]]] = {}
    stack: list[tuple[int, str]] = []  # (column of the name, name) of the open ancestors
    for line in _errors.__doc__.splitlines():
        match = TREE_LINE.match(line)
        if not match:
            continue
        column = len(match["lead"])
        while stack and stack[-1][0] >= column:
            stack.pop()
        parent = stack[-1][1] if stack else None
        also = set(re.findall(r"\balso an? (\w+)", match["rest"]))
        tree[match["name"]] = (parent, also)
        stack.append((column, match["name"]))
    return tree


def _exported_errors() -> dict[str, type[BaseException]]:
    return {
        name: obj
        for name in acidic.__all__
        if isinstance(obj := getattr(acidic, name), type) and issubclass(obj, BaseException)
    }


def _own_docstring(obj: Any) -> str | None:
    doc = obj.__dict__.get("__doc__") if isinstance(obj, type) else obj.__doc__
    if not isinstance(doc, str) or not doc.strip():
        return None
    # dataclasses invent "Name(field: type, ...)" for classes without a docstring.
    if isinstance(obj, type) and doc.startswith(f"{obj.__name__}("):
        return None
    return doc


# -- __all__ ----------------------------------------------------------------------------


def test_all__is_sorted_without_duplicates() -> None:
    assert acidic.__all__ == sorted(acidic.__all__)
    assert len(set(acidic.__all__)) == len(acidic.__all__)


def test_all__lists_every_public_name_of_init() -> None:
    public = {name for name in _init_names() if not name.startswith("_")}

    assert public == set(acidic.__all__)


def test_all__lists_every_public_attribute_of_the_package() -> None:
    # Subpackages (acidic.http, acidic.dashboard, ...) become attributes once any test
    # of the same process imported them: they are not names of acidic's own API.
    public = {
        name
        for name, obj in vars(acidic).items()
        if not name.startswith("_") and not isinstance(obj, types.ModuleType)
    }

    assert public == set(acidic.__all__)


def test_all__every_entry_exists_and_comes_from_acidic() -> None:
    missing = [name for name in acidic.__all__ if not hasattr(acidic, name)]
    assert missing == []
    foreign = [
        name
        for name in acidic.__all__
        if not getattr(getattr(acidic, name), "__module__", "").startswith("acidic.")
    ]
    assert foreign == []


def test_all__every_error_class_derives_from_acidic_error() -> None:
    errors = _exported_errors()

    assert "AcidicError" in errors
    assert [name for name, cls in errors.items() if not issubclass(cls, acidic.AcidicError)] == []
    assert set(errors) == set(_errors.__all__)


def test_all__every_acidic_error_is_exported() -> None:
    defined = {
        name
        for name, obj in vars(_errors).items()
        if isinstance(obj, type) and issubclass(obj, acidic.AcidicError)
    }

    assert defined == set(_exported_errors())


# -- docstrings -------------------------------------------------------------------------


def test_public_objects__have_docstrings() -> None:
    assert acidic.__doc__
    assert _errors.__doc__
    undocumented = [
        name for name in acidic.__all__ if _own_docstring(getattr(acidic, name)) is None
    ]

    assert undocumented == []


def test_public_members__have_docstrings() -> None:
    """Public methods and properties of the public classes are documented too."""
    undocumented = []
    for name in acidic.__all__:
        cls = getattr(acidic, name)
        if not isinstance(cls, type):
            continue
        for attr, value in vars(cls).items():
            member = value.__func__ if isinstance(value, classmethod | staticmethod) else value
            is_routine = isinstance(member, property) or inspect.isfunction(member)
            if is_routine and not attr.startswith("_") and not (member.__doc__ or "").strip():
                undocumented.append(f"{name}.{attr}")

    assert undocumented == []


# -- the error hierarchy ----------------------------------------------------------------


def test_error_hierarchy__docstring_draws_every_error_once() -> None:
    tree = _documented_tree()
    drawn = [
        m["name"] for line in (_errors.__doc__ or "").splitlines() if (m := TREE_LINE.match(line))
    ]

    assert len(drawn) == len(set(drawn))
    assert set(tree) == set(_exported_errors())
    assert tree["AcidicError"][0] is None
    assert [name for name, (parent, _) in tree.items() if parent is None] == ["AcidicError"]


def test_error_hierarchy__parents_are_as_documented() -> None:
    tree = _documented_tree()
    actual = {}
    for name in tree:
        cls = getattr(acidic, name)
        acidic_bases = [b.__name__ for b in cls.__bases__ if issubclass(b, acidic.AcidicError)]
        actual[name] = acidic_bases[0] if len(acidic_bases) == 1 else acidic_bases or None

    assert actual == {name: parent for name, (parent, _) in tree.items()}
    assert acidic.AcidicError.__bases__ == (Exception,)


def test_error_hierarchy__builtin_bases_are_as_documented() -> None:
    """'(also a ValueError)' in the tree is the whole truth: catching a builtin
    exception type catches exactly the acidic errors documented to be one."""
    tree = _documented_tree()
    actual = {}
    for name in tree:
        cls = getattr(acidic, name)
        actual[name] = {
            b.__name__
            for b in cls.__bases__
            if not issubclass(b, acidic.AcidicError) and b is not Exception
        }

    assert actual == {name: also for name, (_, also) in tree.items()}
    documented = {b for _, also in tree.values() for b in also}
    assert all(isinstance(getattr(builtins, b, None), type) for b in documented)
