"""Idempotency keys (a key belongs to the first call that used it; invalid keys are
refused), default keys derived from the job's name and arguments, and how arguments
and context values are checked and stored.

The jobs below are used only here; ``RAN`` counts, per run key, how many times a step
body ran (the autouse fixture resets it).
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import field
from decimal import Decimal
from typing import Any, Optional

import pytest
import sqlalchemy as sa

import acidic
from tests.support.jobs import effect_counts, effects, get_run, migrated_app

#: Every test once per flavour of step (sync, async, ORM session, async ORM session).
pytestmark = pytest.mark.usefixtures("flavour")

RAN: Counter[str] = Counter()
FAIL: set[str] = set()
REACHED: list[str] = []  # ctx cases whose step got past the bad assignment


class Boom(Exception):
    pass


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Echo(acidic.Job):
    """Responds with its own key."""

    n: int = 0

    @acidic.step
    def only(self, tx: sa.Connection) -> acidic.Response:
        RAN[self.key] += 1
        return acidic.Response(self.key)


class TwoSteps(acidic.Job):
    """first, then second (which raises while ``"second"`` is in FAIL)."""

    quantity: int
    label: str = "x"

    @acidic.step
    def first(self, tx: sa.Connection) -> None:
        tx.execute(effects.insert().values(run_key=self.key, step="first"))
        self.ctx["first"] = self.quantity

    @acidic.step
    def second(self, tx: sa.Connection) -> acidic.Response:
        tx.execute(effects.insert().values(run_key=self.key, step="second"))
        if "second" in FAIL:
            raise Boom("second failed")
        return acidic.Response(self.quantity)


class Typed(acidic.Job):
    """Fields of every encoded kind, two with defaults; responds with its key."""

    n: int
    s: str
    when: dt.datetime
    amount: Decimal
    ident: uuid.UUID
    color: Color
    note: str = "dflt"
    limit: int = 10

    @acidic.step
    def only(self, tx: sa.Connection) -> acidic.Response:
        RAN[self.key] += 1
        tx.execute(effects.insert().values(run_key=self.key, step="only"))
        return acidic.Response(self.key)


class Everything(acidic.Job):
    """Every argument type that must round-trip through ``Run.args``."""

    aware: dt.datetime
    naive: dt.datetime
    day: dt.date
    amount: Decimal
    ident: uuid.UUID
    color: Color
    nums: list[int]
    counts: dict[str, int]
    maybe: int | None = None
    opt: Optional[str] = None  # noqa: UP045 - the Optional spelling is what we test
    tags: list[str] = field(default_factory=list)

    @acidic.step
    def only(self, tx: sa.Connection) -> None:
        RAN[self.key] += 1


class Loose(acidic.Job):
    """An argument typed Any."""

    x: Any

    @acidic.step
    def only(self, tx: sa.Connection) -> None:
        RAN[self.key] += 1


class Welcome(acidic.Job):
    """Deduplicated on ``user_id`` only: ``sent_at`` is not part of its identity."""

    user_id: int
    sent_at: str

    def unique_by(self) -> Any:
        return self.user_id

    @acidic.step
    def send(self, tx: sa.Connection) -> acidic.Response:
        RAN[self.key] += 1
        tx.execute(effects.insert().values(run_key=self.key, step="send"))
        return acidic.Response({"user_id": self.user_id, "sent_at": self.sent_at})


CTX_CASES: dict[str, Any] = {
    "set": lambda ctx: ctx.__setitem__("bad", {1, 2}),
    "object": lambda ctx: ctx.__setitem__("bad", object()),
    "nan": lambda ctx: ctx.__setitem__("bad", float("nan")),
    "inf": lambda ctx: ctx.__setitem__("bad", float("-inf")),
    "non_str_dict_key": lambda ctx: ctx.__setitem__("bad", {1: "one"}),
    "nested_set": lambda ctx: ctx.__setitem__("bad", {"ok": [1, {"deep": {3}}]}),
    "non_str_ctx_key": lambda ctx: ctx.__setitem__(1, "one"),
    "setdefault_set": lambda ctx: ctx.setdefault("bad", {1}),
    "update_object": lambda ctx: ctx.update({"fine": 1, "bad": object()}),
}


class BadCtx(acidic.Job):
    """``keep`` commits a context value; ``bad`` writes, sets a good value, then an
    unstorable one (by ``case``)."""

    case: str

    @acidic.step
    def keep(self, tx: sa.Connection) -> None:
        self.ctx["kept"] = 1

    @acidic.step
    def bad(self, tx: sa.Connection) -> None:
        tx.execute(effects.insert().values(run_key=self.key, step="bad"))
        self.ctx["kept"] = 2
        self.ctx["half"] = True
        CTX_CASES[self.case](self.ctx)
        REACHED.append(self.case)


class BadCtxForeign(acidic.Job):
    """As BadCtx, with the bad assignment in a non-transactional step."""

    case: str

    @acidic.step
    def keep(self, tx: sa.Connection) -> None:
        self.ctx["kept"] = 1

    @acidic.step(transactional=False)
    def bad(self) -> None:
        self.ctx["kept"] = 2
        self.ctx["half"] = True
        CTX_CASES[self.case](self.ctx)
        REACHED.append(self.case)


JOBS: dict[str, type[acidic.Job]] = {
    "keys.Echo": Echo,
    "keys.TwoSteps": TwoSteps,
    "keys.Typed": Typed,
    "keys.Everything": Everything,
    "keys.Loose": Loose,
    "keys.Welcome": Welcome,
    "keys.BadCtx": BadCtx,
    "keys.BadCtxForeign": BadCtxForeign,
}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    for state in (RAN, FAIL, REACHED):
        state.clear()
    yield
    for state in (RAN, FAIL, REACHED):
        state.clear()


@pytest.fixture
def keys_app(database_url: str) -> Iterator[acidic.App]:
    """A migrated App on a fresh database with this module's jobs registered."""
    with migrated_app(database_url, JOBS) as app:
        yield app


_get = get_run


def _stored_keys(app: acidic.App) -> list[str]:
    with app.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT idempotency_key FROM acidic_runs")).scalars())


def _history_rows(app: acidic.App) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM acidic_history")).scalar_one())


# -- the same key for another call -----------------------------------------------------


def test_key__other_arguments_raise_argument_mismatch_before_running(
    keys_app: acidic.App,
) -> None:
    FAIL.add("second")
    with pytest.raises(Boom):
        keys_app.run(TwoSteps(quantity=1), key="order-1")
    FAIL.clear()
    before = _get(keys_app, "order-1")

    with pytest.raises(acidic.ArgumentMismatchError) as caught:
        keys_app.run(TwoSteps(quantity=2), key="order-1")

    message = str(caught.value)
    assert "order-1" in message
    assert "keys.TwoSteps" in message
    assert "quantity" in message
    assert "label" not in message  # only what differs
    assert effect_counts(keys_app.engine, "order-1") == {"first": 1}
    assert _get(keys_app, "order-1") == before


def test_key__other_default_argument_raises_argument_mismatch(keys_app: acidic.App) -> None:
    keys_app.run(TwoSteps(quantity=1), key="k")

    with pytest.raises(acidic.ArgumentMismatchError) as caught:
        keys_app.run(TwoSteps(quantity=1, label="y"), key="k")

    assert "label" in str(caught.value)
    assert effect_counts(keys_app.engine, "k") == {"first": 1, "second": 1}


def test_key__other_job_raises_argument_mismatch_before_running(keys_app: acidic.App) -> None:
    FAIL.add("second")
    with pytest.raises(Boom):
        keys_app.run(TwoSteps(quantity=0), key="shared")
    before = _get(keys_app, "shared")

    with pytest.raises(acidic.ArgumentMismatchError) as caught:
        keys_app.run(Echo(n=0), key="shared")

    message = str(caught.value)
    assert "shared" in message
    assert "keys.TwoSteps" in message
    assert "keys.Echo" in message
    assert RAN == {}
    assert _get(keys_app, "shared") == before


def test_key__other_arguments_for_a_finished_key_raise_argument_mismatch(
    keys_app: acidic.App,
) -> None:
    assert keys_app.run(TwoSteps(quantity=1), key="done") == 1

    with pytest.raises(acidic.ArgumentMismatchError):
        keys_app.run(TwoSteps(quantity=2), key="done")


# -- default keys ----------------------------------------------------------------------


def _typed() -> Typed:
    return Typed(
        n=7,
        s='héllo "wörld" ✓',
        when=dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        amount=Decimal("12.50"),
        ident=uuid.UUID("87654321-4321-8765-4321-876543218765"),
        color=Color.BLUE,
    )


def test_default_key__is_sha256_of_canonical_json_of_name_and_arguments(
    keys_app: acidic.App,
) -> None:
    canonical = json.dumps(
        [
            "keys.Typed",
            {
                "n": 7,
                "s": 'héllo "wörld" ✓',
                "when": "2024-05-06T07:08:09.123456+02:00",
                "amount": "12.50",
                "ident": "87654321-4321-8765-4321-876543218765",
                "color": "blue",
                "note": "dflt",
                "limit": 10,
            },
        ],
        separators=(",", ":"),
        ensure_ascii=False,
        sort_keys=False,
    )
    expected = hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    result = keys_app.run(_typed())

    assert result == expected
    run = _get(keys_app, expected)
    assert run.key == expected
    assert run.job == "keys.Typed"
    assert _stored_keys(keys_app) == [expected]


def test_default_key__identical_calls_are_deduplicated(keys_app: acidic.App) -> None:
    first = keys_app.run(_typed())
    second = keys_app.run(_typed())

    assert first == second
    assert dict(RAN) == {first: 1}
    assert effect_counts(keys_app.engine, first) == {"only": 1}
    assert _get(keys_app, first).attempts == 1


def test_default_key__differs_when_any_argument_differs(keys_app: acidic.App) -> None:
    base = keys_app.run(_typed())
    other_default = _typed()
    other_default.note = "other"

    assert keys_app.run(other_default) != base
    assert len(RAN) == 2


def test_default_key__unique_by_deduplicates_on_fewer_fields(keys_app: acidic.App) -> None:
    first = keys_app.run(Welcome(user_id=1, sent_at="monday"))
    again = keys_app.run(Welcome(user_id=1, sent_at="tuesday"))
    other = keys_app.run(Welcome(user_id=2, sent_at="monday"))

    assert first == {"user_id": 1, "sent_at": "monday"}
    assert again == first
    assert other == {"user_id": 2, "sent_at": "monday"}
    assert sorted(RAN.values()) == [1, 1]
    assert len(_stored_keys(keys_app)) == 2


# -- key validation --------------------------------------------------------------------


INVALID_KEYS: dict[str, Any] = {
    "empty": "",
    "256_chars": "x" * 256,
    "256_wide_chars": "é" * 256,
    "nul_inside": "a\x00b",
    "nul_only": "\x00",
    "surrogate": "lone \ud800 surrogate",
    "int": 123,
    "bytes": b"bytes",
}


def test_key__invalid_raises_invalid_key_error_and_stores_nothing(keys_app: acidic.App) -> None:
    for case, key in INVALID_KEYS.items():
        with pytest.raises(acidic.InvalidKeyError):
            keys_app.run(Echo(), key=key)
        with pytest.raises(acidic.InvalidKeyError):
            keys_app.get(key)
        assert RAN == {}, case

    assert _stored_keys(keys_app) == []
    assert _history_rows(keys_app) == 0


@pytest.mark.parametrize(
    "key",
    ["k" * 255, "é" * 255, "🔑" * 255],
    ids=["ascii", "two_byte", "four_byte"],
)
def test_key__255_characters_is_accepted(keys_app: acidic.App, key: str) -> None:
    assert keys_app.run(Echo(), key=key) == key
    assert keys_app.run(Echo(), key=key) == key

    assert dict(RAN) == {key: 1}
    assert _get(keys_app, key).key == key
    assert _stored_keys(keys_app) == [key]


ODD_KEYS = [
    "k",
    "k ",
    " k",
    "K",
    "k\t",
    "ключ 🔑",
    "with spaces inside",
    'it\'s "quoted"',
    "100%",
    "1_0%",
    "back\\slash",
    "line\nbreak",
    "e\u0301",  # e + combining acute
    "\u00e9",  # precomposed é: another key
    "'; DROP TABLE acidic_runs; --",
]


def test_key__odd_characters_are_distinct_keys_on_every_backend(keys_app: acidic.App) -> None:
    for key in ODD_KEYS:
        assert keys_app.run(Echo(), key=key) == key, key

    assert dict(RAN) == dict.fromkeys(ODD_KEYS, 1)
    assert sorted(_stored_keys(keys_app)) == sorted(ODD_KEYS)
    for key in ODD_KEYS:
        run = _get(keys_app, key)
        assert run.key == key
        assert run.result == key
        assert keys_app.run(Echo(), key=key) == key
    assert dict(RAN) == dict.fromkeys(ODD_KEYS, 1)


def test_key__trailing_space_is_another_key_for_other_arguments(keys_app: acidic.App) -> None:
    keys_app.run(TwoSteps(quantity=1), key="k")

    assert keys_app.run(TwoSteps(quantity=2), key="k ") == 2

    assert _get(keys_app, "k").args == {"quantity": 1, "label": "x"}
    assert _get(keys_app, "k ").args == {"quantity": 2, "label": "x"}


def test_key__get_of_a_missing_key_is_none(keys_app: acidic.App) -> None:
    keys_app.run(Echo(), key="k")

    assert keys_app.get("k ") is None
    assert keys_app.get("K") is None
    assert keys_app.get("k%") is None


# -- arguments -------------------------------------------------------------------------


def _everything(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "aware": dt.datetime(
            2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.timezone(dt.timedelta(hours=-3, minutes=-30))
        ),
        "naive": dt.datetime(1999, 12, 31, 23, 59, 59, 1),
        "day": dt.date(2024, 2, 29),
        "amount": Decimal("-1234567890.123456789000"),
        "ident": uuid.UUID("00000000-0000-4000-8000-000000000001"),
        "color": Color.RED,
        "nums": [3, -1, 0, 2**62],
        "counts": {"b": 2, "a": 1, "ü": 0},
        "maybe": None,
        "opt": "set",
        "tags": [],
    }
    values.update(changes)
    return values


@pytest.mark.parametrize(
    "changes",
    [{}, {"maybe": 5, "opt": None, "tags": ["x"]}],
    ids=["optional_none", "optional_set"],
)
def test_arguments__round_trip_exactly_through_run_args(
    keys_app: acidic.App, changes: dict[str, Any]
) -> None:
    values = _everything(**changes)

    keys_app.run(Everything(**values), key="e")

    args = _get(keys_app, "e").args
    assert args == values
    assert list(args) == list(values)
    for name, value in values.items():
        assert type(args[name]) is type(value), name
    assert args["aware"].utcoffset() == dt.timedelta(hours=-3, minutes=-30)
    assert args["naive"].tzinfo is None
    assert str(args["amount"]) == "-1234567890.123456789000"
    assert args["color"] is Color.RED
    # The stored arguments identify the same call: running again is deduplicated.
    keys_app.run(Everything(**values), key="e")
    assert RAN == {"e": 1}


def test_arguments__defaults_are_stored(keys_app: acidic.App) -> None:
    keys_app.run(TwoSteps(quantity=3), key="d")

    assert _get(keys_app, "d").args == {"quantity": 3, "label": "x"}


WRONG_TYPES: list[tuple[str, dict[str, Any]]] = [
    ("int_given_str", {"n": "1"}),
    ("int_given_bool", {"n": True}),
    ("int_given_float", {"n": 1.0}),
    ("str_given_int", {"s": 1}),
    ("datetime_given_str", {"when": "2024-05-06T07:08:09+02:00"}),
    ("datetime_given_date", {"when": dt.date(2024, 5, 6)}),
    ("decimal_given_float", {"amount": 1.5}),
    ("uuid_given_str", {"ident": "87654321-4321-8765-4321-876543218765"}),
    ("enum_given_value", {"color": "blue"}),
]


def test_arguments__wrong_type_raises_serialization_error_before_storing(
    keys_app: acidic.App,
) -> None:
    valid = _typed()
    for case, changes in WRONG_TYPES:
        values = {f: getattr(valid, f) for f in ("n", "s", "when", "amount", "ident", "color")}
        values.update(changes)

        with pytest.raises(acidic.SerializationError) as caught:
            keys_app.run(Typed(**values), key=f"w-{case}")

        assert next(iter(changes)) in str(caught.value), case
        assert isinstance(caught.value, TypeError), case

    assert RAN == {}
    assert _stored_keys(keys_app) == []


def test_arguments__changed_to_a_wrong_type_after_construction_raise_at_run(
    keys_app: acidic.App,
) -> None:
    job = _typed()
    job.n = "1"  # type: ignore[assignment]

    with pytest.raises(acidic.SerializationError):
        keys_app.run(job, key="w")

    assert RAN == {}
    assert _stored_keys(keys_app) == []


NON_JSON_VALUES: dict[str, Any] = {
    "set": {1, 2},
    "frozenset": frozenset({1}),
    "object": object(),
    "nan": float("nan"),
    "inf": float("inf"),
    "int_dict_key": {1: "a"},
    "nested_set": [1, {2}],
    "lone_surrogate": "\ud800",
}


def test_arguments__non_json_value_in_any_field_raises_serialization_error(
    keys_app: acidic.App,
) -> None:
    for case, value in NON_JSON_VALUES.items():
        with pytest.raises(acidic.SerializationError):
            keys_app.run(Loose(x=value), key=f"a-{case}")
        with pytest.raises(acidic.SerializationError):
            keys_app.run(Loose(x=value))  # nor with a default key

    assert RAN == {}
    assert _stored_keys(keys_app) == []


def test_arguments__json_value_in_any_field_round_trips(keys_app: acidic.App) -> None:
    value = {"a": [1, 2.5, None, True, "s"], "b": {"c": []}}

    keys_app.run(Loose(x=value), key="a")

    assert _get(keys_app, "a").args == {"x": value}


# -- context values --------------------------------------------------------------------


@pytest.mark.parametrize("job", [BadCtx, BadCtxForeign], ids=["transactional", "foreign"])
def test_ctx__unstorable_value_raises_at_assignment_and_nothing_is_half_written(
    keys_app: acidic.App, job: type[BadCtx | BadCtxForeign]
) -> None:
    for case in CTX_CASES:
        key = f"c-{case}"
        with pytest.raises(acidic.SerializationError) as caught:
            keys_app.run(job(case=case), key=key)

        assert REACHED == [], case  # raised on the assignment line, inside the step
        assert "ctx" in str(caught.value), case
        run = _get(keys_app, key)
        assert run.status == "failed", case
        assert run.recovery_point == "bad", case
        assert run.ctx == {"kept": 1}, case
        assert run.error is not None, case
        assert run.error.step == "bad", case
        assert run.error.type == "acidic._errors.SerializationError", case
        events = [(e.step, e.event) for e in run.history]
        assert events[-2:] == [("bad", "started"), ("bad", "errored")], case
        assert effect_counts(keys_app.engine, key) == {}, case


def test_ctx__rejected_value_is_not_kept_and_context_stays_usable() -> None:
    ctx = acidic.Context({"a": 1})

    with pytest.raises(acidic.SerializationError):
        ctx["bad"] = {1}
    with pytest.raises(acidic.SerializationError):
        ctx["a"] = object()

    assert dict(ctx) == {"a": 1}
    ctx["good"] = Decimal("1.5")
    assert dict(ctx) == {"a": 1, "good": Decimal("1.5")}
