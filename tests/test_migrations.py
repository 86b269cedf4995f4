"""acidic's migrations: they build exactly the declared schema, once, on every backend.

The declared schema is ``acidic._storage._schema.metadata``; the migrations are the
SQL files in ``acidic/_storage/migrations/<dialect>/``. The central test migrates one
empty database, runs ``metadata.create_all`` on a second one of the same backend and
compares what both databases say about themselves, through SQLAlchemy's inspector and
through the backend's own catalog, so that a migration file and ``_schema.py`` cannot
drift apart unnoticed.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import acidic
from acidic._storage import _migrations
from acidic._storage._dialects import dialect_for
from acidic._storage._schema import metadata, runs, schema_version
from tests.support.bulk import analyze_runs, fill_runs
from tests.support.databases import create_database

DIALECT_DIRS = ("mysql", "postgresql", "sqlite")
# The runner's own pattern: a file that does not match it is silently ignored.
MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


# -- helpers ----------------------------------------------------------------------------


def _sql_files(dialect_dir: str) -> list[str]:
    folder = resources.files("acidic._storage.migrations").joinpath(dialect_dir)
    return sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))


def _migration_files(dialect_dir: str) -> list[str]:
    """The numbered versions (not the baseline)."""
    return [name for name in _sql_files(dialect_dir) if not name.startswith("baseline_")]


def _expected_names() -> list[str]:
    """``NNNN_name`` of every migration, in order (the same for every dialect)."""
    return [name.removesuffix(".sql") for name in _migration_files("sqlite")]


def _rows(conn: sa.Connection, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in conn.execute(sa.text(sql), params)]


def _option(value: Any) -> str:
    """An index's dialect option as comparable text (a partial index's WHERE clause
    comes back as a TextClause, whose repr is its address)."""
    return value.text if isinstance(value, sa.TextClause) else repr(value)


def _catalog(conn: sa.Connection) -> dict[str, Any]:
    """What the backend's own catalog says about the tables, beyond the inspector."""
    name = conn.dialect.name
    if name == "postgresql":
        return {
            "columns": _rows(
                conn,
                "SELECT table_name, ordinal_position, column_name, data_type, udt_name,"
                " character_maximum_length, numeric_precision, datetime_precision,"
                " is_nullable, column_default, is_identity, collation_name"
                " FROM information_schema.columns WHERE table_schema = current_schema()"
                " ORDER BY table_name, ordinal_position",
            ),
            "constraints": _rows(
                conn,
                "SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)"
                " FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid"
                " WHERE c.relnamespace = current_schema()::regnamespace"
                " ORDER BY c.relname, k.conname",
            ),
            "indexes": _rows(
                conn,
                "SELECT tablename, indexname, replace(indexdef, current_schema() || '.', '')"
                " FROM pg_indexes"
                " WHERE schemaname = current_schema() ORDER BY tablename, indexname",
            ),
            "sequences": _rows(
                conn,
                "SELECT sequence_name, data_type, start_value, increment, maximum_value"
                " FROM information_schema.sequences WHERE sequence_schema = current_schema()"
                " ORDER BY sequence_name",
            ),
        }
    if name in ("mysql", "mariadb"):
        return {
            "tables": _rows(
                conn,
                "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION, CREATE_OPTIONS, TABLE_COMMENT"
                " FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
                " ORDER BY TABLE_NAME",
            ),
            "columns": _rows(
                conn,
                "SELECT TABLE_NAME, ORDINAL_POSITION, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE,"
                " COLUMN_DEFAULT, CHARACTER_SET_NAME, COLLATION_NAME, EXTRA, COLUMN_KEY"
                " FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE()"
                " ORDER BY TABLE_NAME, ORDINAL_POSITION",
            ),
            "indexes": _rows(
                conn,
                "SELECT TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX, COLUMN_NAME, NON_UNIQUE,"
                " SUB_PART, INDEX_TYPE FROM information_schema.STATISTICS"
                " WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
            ),
            "constraints": _rows(
                conn,
                "SELECT TABLE_NAME, CONSTRAINT_NAME, CONSTRAINT_TYPE"
                " FROM information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = DATABASE()"
                " ORDER BY TABLE_NAME, CONSTRAINT_NAME",
            ),
            "references": _rows(
                conn,
                "SELECT TABLE_NAME, CONSTRAINT_NAME, REFERENCED_TABLE_NAME, UPDATE_RULE,"
                " DELETE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS"
                " WHERE CONSTRAINT_SCHEMA = DATABASE() ORDER BY TABLE_NAME, CONSTRAINT_NAME",
            ),
        }
    # SQLite: the catalog also shows sqlite_sequence (AUTOINCREMENT) and autoindexes.
    found: dict[str, Any] = {
        "objects": _rows(
            conn, "SELECT type, name, tbl_name FROM sqlite_master ORDER BY type, name"
        ),
    }
    tables = [row[0] for row in _rows(conn, "SELECT name FROM sqlite_master WHERE type='table'")]
    for table in sorted(tables):
        found[f"{table}.table"] = _rows(
            conn, "SELECT type, ncol, wr, strict FROM pragma_table_list(:t)", t=table
        )
        found[f"{table}.columns"] = _rows(conn, "SELECT * FROM pragma_table_xinfo(:t)", t=table)
        found[f"{table}.foreign_keys"] = _rows(
            conn, "SELECT * FROM pragma_foreign_key_list(:t)", t=table
        )
        # seq (the creation order) is left out: it is not part of the schema.
        indexes = _rows(
            conn,
            'SELECT name, "unique", origin, partial FROM pragma_index_list(:t) ORDER BY name',
            t=table,
        )
        found[f"{table}.indexes"] = indexes
        for index in indexes:
            found[f"{table}.index.{index[0]}"] = _rows(
                conn, "SELECT * FROM pragma_index_xinfo(:i)", i=index[0]
            )
    return found


def _schema_of(engine: sa.Engine) -> dict[str, Any]:
    """Everything that can differ between two schemas of one backend, as plain data."""
    inspector = sa.inspect(engine)
    dialect = engine.dialect
    schema: dict[str, Any] = {"tables": sorted(inspector.get_table_names())}
    for table in schema["tables"]:
        schema[f"{table}.columns"] = [
            {
                "name": column["name"],
                "type": column["type"].compile(dialect=dialect),
                "nullable": column["nullable"],
                "has_default": column["default"] is not None,
                "autoincrement": column.get("autoincrement"),
                "identity": column.get("identity"),
                "computed": column.get("computed"),
                "comment": column.get("comment"),
            }
            for column in inspector.get_columns(table)
        ]
        primary_key = inspector.get_pk_constraint(table)
        schema[f"{table}.primary_key"] = (primary_key["name"], primary_key["constrained_columns"])
        schema[f"{table}.unique"] = sorted(
            (uq["name"], uq["column_names"]) for uq in inspector.get_unique_constraints(table)
        )
        schema[f"{table}.foreign_keys"] = sorted(
            (
                fk["name"],
                fk["constrained_columns"],
                fk["referred_table"],
                fk["referred_columns"],
                sorted(fk["options"].items()),
            )
            for fk in inspector.get_foreign_keys(table)
        )
        schema[f"{table}.indexes"] = sorted(
            (
                ix["name"],
                ix["column_names"],
                bool(ix["unique"]),
                sorted((k, _option(v)) for k, v in ix.get("dialect_options", {}).items()),
            )
            for ix in inspector.get_indexes(table)
        )
        schema[f"{table}.options"] = sorted(inspector.get_table_options(table).items())
    with engine.connect() as conn:
        for section, rows in _catalog(conn).items():
            schema[f"catalog.{section}"] = rows
    return schema


def _routines(engine: sa.Engine) -> list[tuple[Any, ...]]:
    """PostgreSQL's triggers and functions (which ``metadata`` does not declare)."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        return _rows(
            conn,
            "SELECT c.relname, t.tgname,"
            " replace(pg_get_triggerdef(t.oid), current_schema() || '.', '')"
            " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal"
            " ORDER BY c.relname, t.tgname",
        ) + _rows(
            conn,
            "SELECT proname, prosrc, '' FROM pg_proc"
            " WHERE pronamespace = current_schema()::regnamespace ORDER BY proname",
        )


def _assert_same_schema(migrated: dict[str, Any], declared: dict[str, Any]) -> None:
    assert migrated["tables"] == sorted(metadata.tables), "the declared tables are missing"
    for section in sorted(declared.keys() | migrated.keys()):
        assert migrated.get(section) == declared.get(section), f"schema drift in {section}"


def _schema_versions(engine: sa.Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [
            (row.version, row.name)
            for row in conn.execute(
                sa.select(schema_version.c.version, schema_version.c.name).order_by(
                    schema_version.c.version
                )
            )
        ]


def _count_runs(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one())


def _run_values(key: str) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "job": "job",
        "args": "{}",
        "steps": "[]",
        "status": "pending",
        "ctx": "{}",
        "attempts": 0,
        "created_at": dt.datetime.now(dt.UTC),
    }


TOUCHED: list[str] = []


class Touch(acidic.Job):
    """A one-step job that records in ``TOUCHED`` that its step ran."""

    label: str

    @acidic.step
    def touch(self, tx: sa.Connection) -> None:
        TOUCHED.append(self.label)


@pytest.fixture
def declared_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database of the same backend, for ``metadata.create_all``."""
    folder = tmp_path / "declared"
    folder.mkdir()
    yield from create_database(backend, folder)


@pytest.fixture
def declared_schema(declared_url: str) -> dict[str, Any]:
    with acidic.App(declared_url) as app:
        metadata.create_all(app.engine)
        return _schema_of(app.engine)


# -- (a) migrating from empty gives exactly the declared schema -------------------------


def test_migrate__from_empty_gives_exactly_the_declared_schema(
    database_url: str, declared_schema: dict[str, Any]
) -> None:
    with acidic.App(database_url) as app:
        app.migrate()
        migrated = _schema_of(app.engine)

    _assert_same_schema(migrated, declared_schema)


def test_migrate__replaying_every_version_gives_what_the_baseline_gives(
    database_url: str, declared_url: str
) -> None:
    """The baseline that builds a new database in one pass and the numbered versions
    one by one (an upgrade) end at the same schema, triggers and functions included."""
    with acidic.App(database_url) as app:
        applied = _migrations.migrate(app.engine, dialect_for(app.engine), baseline=False)
        replayed = _schema_of(app.engine), _routines(app.engine)
        versions = _schema_versions(app.engine)
    with acidic.App(declared_url) as app:
        app.migrate()
        baselined = _schema_of(app.engine), _routines(app.engine)

    assert applied == _expected_names()
    assert [f"{v:04d}_{n}" for v, n in versions] == _expected_names()
    _assert_same_schema(replayed[0], baselined[0])
    assert replayed[1] == baselined[1]
    if app.engine.dialect.name == "postgresql":
        assert len(replayed[1]) == 2  # the finished-run trigger and its function


def test_migrate__baseline_records_the_versions_it_covers_and_applies_later_ones(
    database_url: str,
) -> None:
    with acidic.App(database_url) as app:
        baseline = _migrations.load_baseline(dialect_for(app.engine))
        assert baseline is not None
        applied = app.migrate()
        versions = _schema_versions(app.engine)

    assert applied == _expected_names()
    assert [v for v, _ in versions] == list(range(1, len(_expected_names()) + 1))
    assert baseline.version <= len(_expected_names())


@pytest.mark.parametrize("backend", ["mysql"])
def test_migrate__mysql_half_made_first_migration_is_replayed_not_baselined(
    database_url: str, declared_schema: dict[str, Any]
) -> None:
    """MySQL's DDL commits as it goes: a first migration that died after creating
    0001's tables left them without a version row. The baseline's CREATE TABLE IF NOT
    EXISTS would keep that old acidic_runs; replaying the versions adds what it lacks."""
    with acidic.App(database_url) as app:
        dialect = dialect_for(app.engine)
        first = _migrations.load_migrations(dialect)[0]
        with app.engine.begin() as conn:
            for statement in first.statements():
                conn.exec_driver_sql(dialect.prepare_ddl(conn, statement))
        app.migrate()
        migrated = _schema_of(app.engine)

    _assert_same_schema(migrated, declared_schema)


DRIFTS = {
    "sqlite": [
        "CREATE INDEX acidic_extra_idx ON acidic_runs (status)",
        "DROP INDEX acidic_history_run_idx",
        "ALTER TABLE acidic_runs ADD COLUMN extra INTEGER NOT NULL DEFAULT 0",
    ],
    "postgresql": [
        "CREATE INDEX acidic_extra_idx ON acidic_runs (status)",
        "ALTER TABLE acidic_runs ALTER COLUMN locked_at TYPE TIMESTAMP WITHOUT TIME ZONE",
        "ALTER TABLE acidic_runs ALTER COLUMN job DROP NOT NULL",
        "ALTER TABLE acidic_history DROP CONSTRAINT acidic_history_run_fk,"
        " ADD CONSTRAINT acidic_history_run_fk FOREIGN KEY (run_id) REFERENCES acidic_runs (id)",
    ],
    "mysql": [
        "CREATE INDEX acidic_extra_idx ON acidic_runs (status)",
        "ALTER TABLE acidic_runs MODIFY locked_at DATETIME NULL",
        "ALTER TABLE acidic_runs MODIFY idempotency_key VARCHAR(255) COLLATE utf8mb4_bin NOT NULL",
        "ALTER TABLE acidic_schema_version COLLATE utf8mb4_bin",
        "ALTER TABLE acidic_history DROP FOREIGN KEY acidic_history_run_fk;"
        "ALTER TABLE acidic_history ADD CONSTRAINT acidic_history_run_fk"
        " FOREIGN KEY (run_id) REFERENCES acidic_runs (id)",
    ],
}


@pytest.mark.parametrize(
    ("backend", "drift"),
    [(backend, sql) for backend, sqls in DRIFTS.items() for sql in sqls],
    ids=[f"{backend}-{i}" for backend, sqls in DRIFTS.items() for i in range(len(sqls))],
)
def test_schema_comparison__detects_drift(
    database_url: str, declared_schema: dict[str, Any], drift: str
) -> None:
    """The comparison above is sharp: one index, type, nullability, collation or
    ON DELETE more or less than declared makes the schemas differ."""
    with acidic.App(database_url) as app:
        app.migrate()
        assert _schema_of(app.engine) == declared_schema
        with app.engine.begin() as conn:
            for statement in drift.split(";"):
                conn.exec_driver_sql(statement)
        drifted = _schema_of(app.engine)

    assert drifted != declared_schema


@pytest.mark.parametrize("backend", ["mysql"])
def test_migrate__mysql_tables_and_text_columns_are_utf8mb4_binary(database_url: str) -> None:
    """Keys compare byte for byte on MariaDB/MySQL: a binary, no-pad utf8mb4 collation."""
    with acidic.App(database_url) as app:
        app.migrate()
        with app.engine.connect() as conn:
            tables = _rows(
                conn,
                "SELECT TABLE_NAME, TABLE_COLLATION FROM information_schema.TABLES"
                " WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME",
            )
            columns = _rows(
                conn,
                "SELECT DISTINCT CHARACTER_SET_NAME, COLLATION_NAME"
                " FROM information_schema.COLUMNS"
                " WHERE TABLE_SCHEMA = DATABASE() AND COLLATION_NAME IS NOT NULL",
            )
            server = str(conn.execute(sa.text("SELECT VERSION()")).scalar_one())

    collation = "utf8mb4_nopad_bin" if "mariadb" in server.lower() else "utf8mb4_0900_bin"
    assert tables == [(name, collation) for name in sorted(metadata.tables)]
    assert columns == [("utf8mb4", collation)]


# -- (b) what migrate() returns and records ---------------------------------------------


def test_migrate__returns_applied_names_once_then_nothing(database_url: str) -> None:
    expected = _expected_names()
    assert expected[0] == "0001_initial"
    before = dt.datetime.now(dt.UTC)

    with acidic.App(database_url) as app:
        assert app.migrate() == expected
        assert app.migrate() == []
    with acidic.App(database_url) as other:
        assert other.migrate() == []
        versions = _schema_versions(other.engine)
        with other.engine.connect() as conn:
            stamps = list(conn.execute(sa.select(schema_version.c.applied_at)).scalars())

    assert [f"{version:04d}_{name}" for version, name in versions] == expected
    assert len(stamps) == len(expected)
    assert all(before - dt.timedelta(seconds=5) <= s <= dt.datetime.now(dt.UTC) for s in stamps)


# -- (c) concurrent migrate() calls -----------------------------------------------------

CHILD = """
import json, pathlib, sys, time
import acidic

app = acidic.App(sys.argv[1])
pathlib.Path(sys.argv[2]).touch()
go = pathlib.Path(sys.argv[3])
while not go.exists():
    time.sleep(0.002)
print(json.dumps(app.migrate()))
app.close()
"""


@pytest.mark.slow
@pytest.mark.timeout(300)  # six interpreters start at once; a loaded machine is slow
def test_migrate__concurrent_processes_apply_the_schema_once(
    database_url: str, declared_schema: dict[str, Any], tmp_path: Path
) -> None:
    processes = 6
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{i}" for i in range(processes)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, database_url, str(ready[i]), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(r.exists() for r in ready) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()  # all children are imported and waiting: release them together
        outputs = [child.communicate(timeout=90) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    for child, (_, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    results = sorted((json.loads(out) for out, _ in outputs), key=len)
    assert results == [[]] * (processes - 1) + [_expected_names()]
    with acidic.App(database_url) as app:
        versions = _schema_versions(app.engine)
        migrated = _schema_of(app.engine)
    assert [f"{version:04d}_{name}" for version, name in versions] == _expected_names()
    _assert_same_schema(migrated, declared_schema)


# -- (d) a schema newer than this code --------------------------------------------------


def test_migrate__newer_schema_raises_schema_version_error(database_url: str) -> None:
    TOUCHED.clear()
    newer = len(_expected_names()) + 1
    with acidic.App(database_url) as setup:
        setup.migrate()
        with setup.engine.begin() as conn:
            conn.execute(
                schema_version.insert().values(
                    version=newer, name="from_the_future", applied_at=dt.datetime.now(dt.UTC)
                )
            )
        versions = _schema_versions(setup.engine)

    with acidic.App(database_url) as app:
        app.job(name="touch")(Touch)
        with pytest.raises(acidic.SchemaVersionError, match="upgrade acidic") as migrating:
            app.migrate()
        with pytest.raises(acidic.SchemaVersionError, match="upgrade acidic") as running:
            app.run(Touch(label="x"), key="k")
        with pytest.raises(acidic.SchemaVersionError, match="upgrade acidic") as getting:
            app.get("k")
        assert _schema_versions(app.engine) == versions
        assert _count_runs(app.engine) == 0

    assert TOUCHED == []
    for raised in (migrating, running, getting):
        assert str(newer) in str(raised.value)


# -- (e) an un-migrated database --------------------------------------------------------


def test_app__unmigrated_database_raises_and_creates_nothing(database_url: str) -> None:
    TOUCHED.clear()
    with acidic.App(database_url) as app:
        app.job(name="touch")(Touch)
        with pytest.raises(acidic.SchemaVersionError, match=r"run app\.migrate\(\)"):
            app.run(Touch(label="x"), key="k")
        with pytest.raises(acidic.SchemaVersionError, match=r"run app\.migrate\(\)"):
            app.get("k")
        with pytest.raises(acidic.SchemaVersionError, match=r"run app\.migrate\(\)"):
            app.run(Touch(label="y"))  # a derived key takes the same path
        tables = sa.inspect(app.engine).get_table_names()

    assert tables == []
    assert TOUCHED == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_app__unmigrated_sqlite_file_is_not_created(database_url: str) -> None:
    """On SQLite the database is a file: refusing to work must not leave one behind."""
    path = Path(str(sa.make_url(database_url).database))
    assert not path.exists()
    with acidic.App(database_url) as app:
        app.job(name="touch")(Touch)
        with pytest.raises(acidic.SchemaVersionError, match=r"run app\.migrate\(\)"):
            app.get("k")
        with pytest.raises(acidic.SchemaVersionError, match=r"run app\.migrate\(\)"):
            app.run(Touch(label="x"), key="k")

    assert sorted(p.name for p in path.parent.glob(f"{path.name}*")) == []


def test_app__works_once_migrated_after_refusing(database_url: str) -> None:
    """The refusal is not cached: the same App works after another one migrates."""
    TOUCHED.clear()
    with acidic.App(database_url) as app:
        app.job(name="touch")(Touch)
        with pytest.raises(acidic.SchemaVersionError):
            app.get("k")
        with acidic.App(database_url) as migrator:
            migrator.migrate()
        app.run(Touch(label="x"), key="k")
        run = app.get("k")

    assert TOUCHED == ["x"]
    assert run is not None
    assert run.status == acidic.RunStatus.SUCCEEDED


# -- (f) the migration files of all dialects --------------------------------------------


def test_migration_files__every_dialect_has_the_same_versions_and_names() -> None:
    folder = resources.files("acidic._storage.migrations")
    dirs = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    assert [d for d in dirs if not d.startswith("__")] == list(DIALECT_DIRS)

    files = {dialect: _migration_files(dialect) for dialect in DIALECT_DIRS}

    for dialect, names in files.items():
        bad = [name for name in names if not MIGRATION_FILE.match(name)]
        assert bad == [], f"{dialect}: files the runner would ignore"
        versions = [int(name[:4]) for name in names]
        assert versions == list(range(1, len(names) + 1)), f"{dialect}: not numbered 1..n"
    assert files["postgresql"] == files["sqlite"]
    assert files["mysql"] == files["sqlite"]
    assert files["sqlite"][0] == "0001_initial.sql"

    # One baseline per dialect, covering the same versions (a prefix of them).
    baselines = {
        dialect: [name for name in _sql_files(dialect) if name.startswith("baseline_")]
        for dialect in DIALECT_DIRS
    }
    assert baselines["postgresql"] == baselines["sqlite"] == baselines["mysql"]
    assert len(baselines["sqlite"]) == 1
    assert 1 <= int(baselines["sqlite"][0][9:13]) <= len(files["sqlite"])


# -- (g) the key index ------------------------------------------------------------------


def _key_indexes(conn: sa.Connection) -> list[tuple[str, bool, bool, list[str]]]:
    """Indexes of acidic_runs as (name, unique, covers whole values, columns)."""
    name = conn.dialect.name
    if name == "postgresql":
        rows = _rows(
            conn,
            "SELECT ic.relname, ix.indisunique, ix.indpred IS NULL AND am.amname = 'btree',"
            " array(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, n)"
            "       JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum"
            "       ORDER BY k.n)"
            " FROM pg_index ix JOIN pg_class ic ON ic.oid = ix.indexrelid"
            " JOIN pg_am am ON am.oid = ic.relam WHERE ix.indrelid = 'acidic_runs'::regclass",
        )
        return sorted((n, u, whole, list(cols)) for n, u, whole, cols in rows)
    if name in ("mysql", "mariadb"):
        by_index: dict[str, tuple[bool, bool, list[str]]] = {}
        for index, non_unique, sub_part, kind, column in _rows(
            conn,
            "SELECT INDEX_NAME, NON_UNIQUE, SUB_PART, INDEX_TYPE, COLUMN_NAME"
            " FROM information_schema.STATISTICS"
            " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'acidic_runs'"
            " ORDER BY INDEX_NAME, SEQ_IN_INDEX",
        ):
            unique, whole, cols = by_index.get(index, (True, True, []))
            by_index[index] = (
                unique and not non_unique,
                whole and sub_part is None and kind == "BTREE",
                [*cols, column],
            )
        return sorted((n, *v) for n, v in by_index.items())
    found = []
    for _, index, unique, _, partial in _rows(
        conn, "SELECT * FROM pragma_index_list('acidic_runs')"
    ):
        cols = [r[2] for r in _rows(conn, "SELECT * FROM pragma_index_info(:i)", i=index)]
        found.append((index, bool(unique), not partial, cols))
    return sorted(found)


def test_runs_table__has_a_unique_index_on_the_idempotency_key(database_url: str) -> None:
    with acidic.App(database_url) as app:
        app.migrate()
        with app.engine.connect() as conn:
            indexes = _key_indexes(conn)

    # The trigram index of 0011 (PostgreSQL, search by substring) is not a key index.
    assert [
        (u, whole)
        for name, u, whole, cols in indexes
        if cols == ["idempotency_key"] and name != "acidic_runs_key_trgm_idx"
    ] == [(True, True)]


def test_runs_table__keys_are_unique_and_compared_byte_for_byte(database_url: str) -> None:
    longest = "\N{GRINNING FACE}" * 255  # the longest key, in 4-byte characters
    keys = ["k", "k ", "K", "ke", longest]
    with acidic.App(database_url) as app:
        app.migrate()
        with app.engine.begin() as conn:
            conn.execute(runs.insert(), [_run_values(key) for key in keys])
        with pytest.raises(sa.exc.IntegrityError), app.engine.begin() as conn:
            conn.execute(runs.insert().values(_run_values("k")))
        with app.engine.connect() as conn:
            stored = list(conn.execute(sa.select(runs.c.idempotency_key)).scalars())
            found = conn.execute(
                sa.select(runs.c.idempotency_key).where(runs.c.idempotency_key == longest)
            ).scalar_one()

    assert sorted(stored) == sorted(keys)
    assert found == longest


def _plan(conn: sa.Connection, query: str) -> str:
    name = conn.dialect.name
    if name == "sqlite":
        return "\n".join(str(r[3]) for r in _rows(conn, f"EXPLAIN QUERY PLAN {query}"))
    if name == "postgresql":
        return "\n".join(str(r[0]) for r in _rows(conn, f"EXPLAIN {query}"))
    result = conn.exec_driver_sql(f"EXPLAIN {query}")
    return "\n".join(json.dumps(dict(r._mapping), default=str) for r in result)


def test_runs_table__key_lookup_uses_the_index(backend: str, database_url: str) -> None:
    with acidic.App(database_url) as app:
        app.migrate()
        with app.engine.begin() as conn:
            fill_runs(conn, 20_000)
        with app.engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one()
            analyze_runs(conn)
            present = _plan(conn, "SELECT * FROM acidic_runs WHERE idempotency_key = 'key-12345'")
            absent = _plan(conn, "SELECT * FROM acidic_runs WHERE idempotency_key = 'x'")

    assert count == 20_000
    if backend == "postgresql":
        for plan in (present, absent):
            assert re.search(r"Index (Only )?Scan using acidic_runs_key_uq", plan), plan
            assert "Seq Scan" not in plan, plan
    elif backend == "sqlite":
        assert re.search(r"SEARCH acidic_runs USING INDEX \S+ \(idempotency_key=\?\)", present)
        assert "SCAN" not in present, present
    else:
        assert json.loads(present)["key"] == "acidic_runs_key_uq", present
        assert json.loads(present)["type"] in ("const", "eq_ref", "ref"), present
