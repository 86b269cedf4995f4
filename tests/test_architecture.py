"""The layering rules of docs/architecture.md, checked on the source: SQL only in the
storage package, no private attribute of the App used outside it, the engine free of
dialects and adapters, modules of a readable size, and ``import acidic`` light."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "acidic"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)
#: The longest a module may grow before it is split by concern.
MAX_LINES = 520

#: SQL keywords as they start a statement in a string literal.
_SQL = re.compile(
    r"^\s*(SELECT|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+|ALTER\s+|DROP\s+"
    r"|BEGIN|COMMIT|ROLLBACK|LISTEN|NOTIFY|PRAGMA|SET\s+)",
)
#: SQLAlchemy constructs that build statements.
_BUILDERS = {"select", "insert", "update", "delete", "text", "union_all", "bindparam"}
#: The App's private attributes.
_APP_PRIVATE = {"_store", "_manager", "_jobs", "_names", "_queues", "_owns_engine"}


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _in_storage(path: Path) -> bool:
    return _relative(path).startswith("_storage/")


#: The demo's job writes its own table in its steps, as a user's job does.
_USER_CODE = {"_cli/_demo.py"}


@pytest.mark.parametrize("path", SOURCES, ids=_relative)
def test_sql__only_in_the_storage_package(path: Path) -> None:
    if _in_storage(path) or _relative(path) in _USER_CODE:
        return
    found = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if _SQL.match(node.value):
                found.append(f"line {node.lineno}: {node.value[:40]!r}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in _BUILDERS
            and isinstance(node.value, ast.Name)
            and node.value.id in ("sa", "sqlalchemy")
        ):
            found.append(f"line {node.lineno}: sa.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module and "_schema" in node.module:
            found.append(f"line {node.lineno}: imports the tables")
    assert not found, f"SQL outside acidic/_storage in {_relative(path)}: {found}"


@pytest.mark.parametrize("path", SOURCES, ids=_relative)
def test_app__private_attributes_are_used_only_by_the_app(path: Path) -> None:
    # _app_*.py: the App's methods, in modules of their own (mixins of the App).
    if _relative(path) == "_app.py" or _relative(path).startswith("_app_"):
        return
    found = [
        f"line {node.lineno}: .{node.attr}"
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Attribute)
        and node.attr in _APP_PRIVATE
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert not found, f"{_relative(path)} reaches into the App: {found}"


def _imports(path: Path) -> set[str]:
    """The acidic modules ``path`` imports, as absolute dotted names."""
    # A module's package: its path without its own name (``__init__`` for a package).
    package = ["acidic", *path.relative_to(PACKAGE).with_suffix("").parts][:-1]
    names = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            if module.startswith("acidic"):
                names.add(module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("acidic"))
    return names


#: Layer -> the acidic packages it must never import.
_FORBIDDEN = {
    "_engine/": ("acidic._cli", "acidic._worker", "acidic.http", "acidic.dashboard", "acidic._app"),
    "_storage/": (
        "acidic._engine",
        "acidic._app",
        "acidic._cli",
        "acidic._worker",
        "acidic.http",
        "acidic.dashboard",
    ),
    "_worker/": ("acidic._cli", "acidic.http", "acidic.dashboard", "acidic._storage"),
    "http/": ("acidic._cli", "acidic._worker", "acidic.dashboard", "acidic._storage._"),
    "dashboard/": ("acidic._cli", "acidic._worker", "acidic.http", "acidic._storage"),
    "_telemetry/": (
        "acidic._cli",
        "acidic._worker",
        "acidic.http",
        "acidic.dashboard",
        "acidic._app",
        "acidic._storage",
    ),
}


@pytest.mark.parametrize("path", SOURCES, ids=_relative)
def test_layers__each_imports_only_what_is_below_it(path: Path) -> None:
    relative = _relative(path)
    forbidden = next((f for layer, f in _FORBIDDEN.items() if relative.startswith(layer)), ())
    bad = sorted(m for m in _imports(path) if m.startswith(forbidden))
    assert not bad, f"{relative} imports {bad}"


def test_engine__knows_no_dialect() -> None:
    """The engine asks the store what it needs to know of the database, by what it means
    (``store.notifies``), never by the dialect, and imports no driver."""
    found = []
    for path in (PACKAGE / "_engine").glob("*.py"):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Attribute) and node.attr == "dialect":
                found.append(f"{path.name} line {node.lineno}: .dialect")
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                drivers = [n for n in names if n.split(".")[0] in ("psycopg", "pymysql", "sqlite3")]
                found.extend(f"{path.name} line {node.lineno}: {d}" for d in drivers)
    assert not found, found


def test_engine__knows_no_telemetry_library() -> None:
    """The engine reports through its Observer port (``_observe``); only the adapter
    package ``_telemetry`` imports OpenTelemetry or prometheus_client."""
    found: list[str] = []
    for path in SOURCES:
        if _relative(path).startswith("_telemetry/"):
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                bad = [
                    n for n in names if n.split(".")[0] in ("opentelemetry", "prometheus_client")
                ]
                found.extend(f"{_relative(path)} line {node.lineno}: {b}" for b in bad)
    assert not found, found


@pytest.mark.parametrize("path", SOURCES, ids=_relative)
def test_modules__stay_readable(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{_relative(path)} has {lines} lines: split it by concern"


def test_import_acidic__loads_no_cli_dashboard_or_http_module() -> None:
    code = (
        "import sys, acidic\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('click', 'rich', 'starlette', 'jinja2', 'uvicorn', 'opentelemetry', "
        "'prometheus_client') or m.startswith("
        "('acidic._cli', 'acidic.http', 'acidic.dashboard')))\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
