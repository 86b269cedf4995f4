"""Bad input, fuzzed with hypothesis on all three databases: arguments, keys, context
values, step results, and run records edited by hand into odd states.

Every case must end in a documented error (an ``acidic.AcidicError``, raised before
anything is stored for bad input) or in a correct run whose stored values read back
equal; a worker draining odd records never crashes and never silently drops a run.
"""

from __future__ import annotations

import datetime as dt
import enum
import itertools
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import acidic
from acidic._storage._schema import history, runs
from tests.support import jobs

FUZZ = settings(
    max_examples=40,
    deadline=None,
    # CI replays the same examples each time (a new finding must not make CI flaky);
    # locally, each run explores new ones.
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_keys = itertools.count()

#: Values a step puts in its context or returns, by run key (steps read them there).
PAYLOADS: dict[str, Any] = {}


class Typed(acidic.Job):
    n: int
    s: str
    f: float
    tags: list[str]
    meta: dict[str, int]

    @acidic.step
    def echo(self, tx: sa.Connection) -> acidic.Response:
        return acidic.Response([self.n, self.s, self.f, self.tags, self.meta])


class Carry(acidic.Job):
    """Puts the key's payload in its context, then returns it as its result."""

    @acidic.step
    def keep(self, tx: sa.Connection) -> None:
        self.ctx["value"] = PAYLOADS[self.key]

    @acidic.step(transactional=False)
    def give(self) -> acidic.Response:
        return acidic.Response(self.ctx["value"])


class Sentinel(acidic.Job):
    @acidic.step
    def only(self, tx: sa.Connection) -> acidic.Response:
        return acidic.Response("ok")


JOBS: dict[str, type[acidic.Job]] = {"Typed": Typed, "Carry": Carry, "Sentinel": Sentinel}


@pytest.fixture
def app(database_url: str) -> Iterator[acidic.App]:
    with jobs.migrated_app(database_url, JOBS) as application:
        yield application


def _key(prefix: str) -> str:
    return f"{prefix}-{next(_keys)}-{uuid.uuid4().hex[:6]}"


def _row_count(app: acidic.App, key: str) -> int:
    with app.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(runs).where(runs.c.idempotency_key == key)
            ).scalar_one()
        )


class Colour(enum.Enum):
    RED = "red"


_junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(codec=None), max_size=20),
    st.binary(max_size=10),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.sets(st.integers(), max_size=3),
    st.builds(object),
    st.decimals(allow_nan=False, places=2),
    st.datetimes(),
)


@FUZZ
@given(
    n=st.one_of(st.integers(), _junk),
    s=st.one_of(st.text(st.characters(codec=None)), _junk),
    f=st.one_of(st.floats(), _junk),
    tags=st.one_of(st.lists(st.text(max_size=10), max_size=4), _junk),
    meta=st.one_of(st.dictionaries(st.text(max_size=10), st.integers(), max_size=4), _junk),
)
def test_fuzz__arguments_are_stored_exactly_or_refused_before_anything_is_stored(
    app: acidic.App, n: Any, s: Any, f: Any, tags: Any, meta: Any
) -> None:
    key = _key("args")
    refused: acidic.SerializationError | None = None
    try:
        job = Typed(n=n, s=s, f=f, tags=tags, meta=meta)
        result = app.run(job, key=key)
    except acidic.SerializationError as exc:
        refused = exc
    if refused is not None:
        assert isinstance(refused, TypeError)
        assert _row_count(app, key) == 0, "a refused call stored something"
        return
    run = jobs.get_run(app, key)
    assert run.status == "succeeded"
    assert run.args == {"n": job.n, "s": job.s, "f": job.f, "tags": job.tags, "meta": job.meta}
    assert result == [job.n, job.s, job.f, job.tags, job.meta]
    assert app.run(Typed(n=job.n, s=job.s, f=job.f, tags=job.tags, meta=job.meta), key=key) == (
        result
    )


@FUZZ
@given(key=st.text(st.characters(codec=None), max_size=300))
def test_fuzz__any_key_is_used_as_given_or_refused_with_invalid_key_error(
    app: acidic.App, key: str
) -> None:
    PAYLOADS[key] = key
    try:
        result = app.run(Carry(), key=key)
    except acidic.InvalidKeyError:
        assert not key or len(key) > 255 or "\x00" in key or _not_unicode(key)
        return
    assert result == key
    run = jobs.get_run(app, key)
    assert run.key == key
    # Another key that differs only by case or trailing space is another run.
    for other in {key.upper(), key + " ", key.rstrip()} - {key}:
        if 0 < len(other) <= 255:
            got = app.get(other)
            assert got is None or got.key == other


def _not_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_context_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(st.characters(codec=None), max_size=20),
        st.binary(max_size=20),
        st.datetimes(timezones=st.one_of(st.none(), st.timezones())),
        st.dates(),
        st.times(),
        st.decimals(allow_nan=True, allow_infinity=True),
        st.uuids(),
        st.just(Colour.RED),
        st.sets(st.integers(), max_size=2),
        st.builds(object),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(
            st.one_of(st.text(max_size=8), st.just("__acidic__")), children, max_size=3
        ),
        st.dictionaries(st.integers(), children, max_size=2),
    ),
    max_leaves=8,
)


def _expected(value: Any) -> Any:
    """What a stored value decodes to: tuples as lists, Enum members as their value."""
    if isinstance(value, list | tuple):
        return [_expected(v) for v in value]
    if isinstance(value, dict):
        return {k: _expected(v) for k, v in value.items()}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime | dt.time) and value.utcoffset() is not None:
        # The UTC offset is stored, not the zone's name: compare as a fixed offset (two
        # zones' datetimes at an ambiguous wall time never compare equal otherwise).
        offset = value.utcoffset()
        assert offset is not None
        return value.replace(tzinfo=dt.timezone(offset))
    return value


@FUZZ
@given(value=_context_values)
def test_fuzz__context_values_and_results_read_back_equal_or_fail_the_step_clearly(
    app: acidic.App, value: Any
) -> None:
    key = _key("ctx")
    PAYLOADS[key] = value
    refused: acidic.SerializationError | None = None
    try:
        result = app.run(Carry(), key=key)
    except acidic.SerializationError as exc:
        refused = exc
    if refused is not None:
        # Refused when set in the context: the step failed, the run says why and can be
        # resumed; nothing of the step was committed.
        run = jobs.get_run(app, key)
        assert run.status == "failed"
        assert run.error is not None
        assert run.error.type == "acidic._errors.SerializationError"
        assert run.error.message == str(refused)
        assert run.ctx == {}
        return
    assert result == _expected(value)
    run = jobs.get_run(app, key)
    assert run.ctx == {"value": _expected(value)}
    assert run.result == _expected(value)
    assert app.run(Carry(), key=key) == _expected(value)  # the stored result, again


# -- run records edited by hand ---------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
_json_text = st.one_of(
    _text,
    st.just("{"),
    st.just("[]"),
    st.just("null"),
    st.just('{"n": "x"}'),
    st.just('"a string"'),
    st.just('{"__acidic__": "nope", "v": 1}'),
)
_edits = st.fixed_dictionaries(
    {},
    optional={
        "status": st.one_of(
            st.sampled_from([s.value for s in acidic.RunStatus]),
            st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=16),
        ),
        "recovery_point": st.one_of(st.none(), st.just("only"), _text),
        "args": _json_text,
        "ctx": _json_text,
        "steps": _json_text,
        "result": st.one_of(st.none(), _json_text),
        "error": st.one_of(st.none(), _json_text),
        "attempts": st.integers(min_value=-3, max_value=10**6),
        "lock_token": st.one_of(st.none(), st.just("f" * 32)),
        "queue": st.one_of(st.none(), st.just("default"), st.just("unknown")),
        "job": st.one_of(st.just("Sentinel"), st.just("Typed"), _text),
    },
)


@FUZZ
@given(edits=_edits, drop_history=st.booleans())
def test_fuzz__odd_run_records_end_in_errors_never_a_crash_nor_a_dropped_run(
    app: acidic.App, edits: dict[str, Any], drop_history: bool
) -> None:
    key = _key("odd")
    app.enqueue(Sentinel(), key=key)
    app.drain()
    app.enqueue(Sentinel(), key=f"{key}-due")  # due: it will be drained below
    with app.engine.begin() as conn:
        if edits:
            conn.execute(runs.update().where(runs.c.idempotency_key == key).values(**edits))
        if drop_history:
            run_id = conn.execute(
                sa.select(runs.c.id).where(runs.c.idempotency_key == key)
            ).scalar_one()
            conn.execute(history.delete().where(history.c.run_id == run_id))
        # Make the odd run due (or stale) so the worker meets it.
        conn.execute(
            runs.update()
            .where(runs.c.idempotency_key == key)
            .values(
                run_at=None if "status" not in edits else _long_ago(),
                lock_expires_at=_long_ago() if edits.get("lock_token") else None,
            )
        )

    def read() -> acidic.Run | None:
        try:
            return app.get(key)
        except acidic.AcidicError:
            return None  # a documented error naming the key is fine

    read()
    with pytest.raises(acidic.AcidicError) if _refused(edits) else _maybe_raises():
        app.run(Sentinel(), key=key)
    assert app.drain() >= 0  # never raises
    assert jobs.get_run(app, f"{key}-due").status == "succeeded"
    assert _row_count(app, key) == 1, "the odd run was dropped"
    run = read()
    if run is not None and run.job in JOBS and run.queue in (None, *app.queues):
        # Readable, and served by this worker: nothing of it may be left due or stale.
        waiting = run.status in ("pending", "scheduled") and run.queue is not None
        stale = run.status == "running" and run.lock_expires_at is not None
        assert not waiting, f"the worker left {run.status} run {key!r} behind"
        assert not stale, f"the worker left {run.status} run {key!r} behind"


def _long_ago() -> dt.datetime:
    return dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def _refused(edits: dict[str, Any]) -> bool:
    return "job" in edits and edits["job"] != "Sentinel"


class _maybe_raises:
    """Allows a documented error (AcidicError) or success, nothing else."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> bool:
        return exc_type is None or issubclass(exc_type, acidic.AcidicError)


def test_fuzz__json_dumps_of_stored_args_is_canonical(app: acidic.App) -> None:
    # Same arguments in another order or with other whitespace are the same call.
    app.run(Typed(n=1, s="x", f=1.5, tags=["a"], meta={"b": 2, "a": 1}), key="canon")
    with app.engine.connect() as conn:
        stored = conn.execute(
            sa.select(runs.c.args).where(runs.c.idempotency_key == "canon")
        ).scalar_one()
    assert json.loads(stored)["meta"] == {"a": 1, "b": 2}
    assert app.run(Typed(n=1, s="x", f=1.5, tags=["a"], meta={"a": 1, "b": 2}), key="canon")
