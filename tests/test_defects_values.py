"""Values acidic cannot store raise SerializationError on the line that sets them (issue
11, defects found in use): ``bytes`` arguments are stored (as base64) instead of
breaking the job's construction with a UnicodeDecodeError, and values nested too deeply
(arguments, context, results) are refused as documented instead of raising pydantic's
bare ValueError or a RecursionError from inside acidic."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest
import sqlalchemy as sa

import acidic
from tests.support.jobs import get_run

#: The nesting limit docs/concepts.md documents.
MAX_DEPTH = 100


def _nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


class Blob(acidic.Job):
    """A job whose arguments are bytes."""

    data: bytes
    parts: list[bytes]

    @acidic.step
    def keep(self, tx: sa.Connection) -> acidic.Response:
        self.ctx["data"] = self.data
        return acidic.Response({"data": self.data, "parts": self.parts})


class AnyArg(acidic.Job):
    """A job with an argument of any type."""

    value: Any

    @acidic.step
    def noop(self, tx: sa.Connection) -> None:
        pass


class ListArg(acidic.Job):
    """A job with a list argument."""

    value: list[Any]

    @acidic.step
    def noop(self, tx: sa.Connection) -> None:
        pass


#: What the step of DeepContext saw: the error of the line that set a too-deep value.
CAUGHT: list[BaseException] = []


class DeepContext(acidic.Job):
    """Sets a context value nested ``levels`` deep, catching the error of that line."""

    levels: int

    @acidic.step
    def store(self, tx: sa.Connection) -> acidic.Response:
        try:
            self.ctx["deep"] = _nested(self.levels)
        except acidic.SerializationError as exc:
            CAUGHT.append(exc)
        return acidic.Response(sorted(self.ctx))


class DeepResult(acidic.Job):
    """Returns a result nested ``levels`` deep."""

    levels: int

    @acidic.step
    def answer(self, tx: sa.Connection) -> acidic.Response:
        return acidic.Response(_nested(self.levels))


@pytest.fixture
def values_app(app: acidic.App) -> acidic.App:
    for cls in (Blob, AnyArg, ListArg, DeepContext, DeepResult):
        app.job(name=f"defects.{cls.__name__}")(cls)
    CAUGHT.clear()
    return app


def test_job_arguments__bytes_that_are_not_utf8_are_stored_and_read_back(
    values_app: acidic.App,
) -> None:
    data = bytes(range(256))
    job = Blob(data=data, parts=[b"\xff\xfe", b""])

    result = values_app.run(job, key="blob")

    assert result == {"data": data, "parts": [b"\xff\xfe", b""]}
    run = get_run(values_app, "blob")
    assert run.args == {"data": data, "parts": [b"\xff\xfe", b""]}
    assert run.ctx == {"data": data}
    # The same arguments are the same call; other bytes are other arguments.
    assert values_app.run(Blob(data=data, parts=[b"\xff\xfe", b""]), key="blob") == result
    with pytest.raises(acidic.ArgumentMismatchError, match="data"):
        values_app.run(Blob(data=b"\x00", parts=[b"\xff\xfe", b""]), key="blob")


def test_job_arguments__bytes_in_a_field_typed_any_is_a_serialization_error_naming_it() -> None:
    with pytest.raises(acidic.SerializationError, match="argument 'value'"):
        AnyArg(value=b"\xff\x00")


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 255, 300, 5000])
@pytest.mark.parametrize("cls", [AnyArg, ListArg])
def test_job_arguments__nested_too_deeply_is_a_serialization_error_naming_the_argument(
    cls: type[acidic.Job], levels: int
) -> None:
    with pytest.raises(acidic.SerializationError, match=rf"argument 'value'.*{MAX_DEPTH} levels"):
        cls(value=_nested(levels))  # type: ignore[call-arg]


def test_job_arguments__nested_as_deep_as_allowed_are_stored(values_app: acidic.App) -> None:
    deep = _nested(MAX_DEPTH - 1)  # the list argument itself is one level

    values_app.run(ListArg(value=deep), key="deep-args")

    assert get_run(values_app, "deep-args").args == {"value": deep}


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 500, 5000])
def test_context__a_value_nested_too_deeply_raises_on_the_line_that_sets_it(
    values_app: acidic.App, levels: int
) -> None:
    keys = values_app.run(DeepContext(levels=levels), key=f"deep-ctx-{levels}")

    assert keys == []  # nothing was set, and the step went on
    [error] = CAUGHT
    assert "ctx['deep']" in str(error)
    assert f"{MAX_DEPTH} levels" in str(error)
    run = get_run(values_app, f"deep-ctx-{levels}")
    assert (run.status, run.error) == ("succeeded", None)


def test_context__a_value_nested_as_deep_as_allowed_is_stored(values_app: acidic.App) -> None:
    values_app.run(DeepContext(levels=MAX_DEPTH), key="deep-ctx-ok")

    assert CAUGHT == []
    assert get_run(values_app, "deep-ctx-ok").ctx == {"deep": _nested(MAX_DEPTH)}


def test_result__nested_too_deeply_is_a_serialization_error_stored_as_such(
    values_app: acidic.App,
) -> None:
    with pytest.raises(acidic.SerializationError, match="result of step answer"):
        values_app.run(DeepResult(levels=1000), key="deep-result")

    run = get_run(values_app, "deep-result")
    assert run.status == "failed"
    assert run.error is not None
    assert run.error.type == "acidic._errors.SerializationError"


class Packet(pydantic.BaseModel):
    """A pydantic model of the user's own, with its default (UTF-8) bytes serialisation."""

    payload: bytes


class Wrapped(acidic.Job):
    """A job whose argument is a pydantic model holding bytes."""

    packet: Packet

    @acidic.step
    def noop(self, tx: sa.Connection) -> None:
        pass


def test_job_arguments__bytes_a_model_of_its_own_cannot_store_name_the_argument() -> None:
    with pytest.raises(acidic.SerializationError, match=r"argument 'packet'.*ser_json_bytes"):
        Wrapped(packet=Packet(payload=b"\xff"))
