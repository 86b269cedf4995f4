"""Jobs and steps: how a user declares a multi-step job.

A job is a class deriving from :class:`Job`. Its annotated attributes are its
arguments (a keyword-only dataclass, validated strictly and stored as JSON); its
methods decorated with :func:`step` are its steps, in definition order.
"""

from __future__ import annotations

import dataclasses
import inspect
import random
import typing
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, dataclass_transform, overload

import pydantic
import pydantic_core

from ._context import Context
from ._encoding import MAX_DEPTH, encode_value, nesting, step_key
from ._errors import JobDefinitionError, NotInStepError, SerializationError
from ._limits import Limit
from ._run import Run

__all__ = ["Job", "JobDefinition", "StepSpec", "StepState", "step"]

F = TypeVar("F", bound=Callable[..., Any])

#: Names a job's fields may not use: they are the job's run-time attributes.
RESERVED_NAMES = frozenset(
    {
        "key",
        "step_key",
        "ctx",
        "attempt",
        "retrying",
        "unique_by",
        "lock_timeout",
        "signal",
        "spawn",
        "children",
        "concurrency",
        "max_attempts",
        "discard_on",
        "backoff",
        "redact",
    }
)

#: Default retry budget of an enqueued run.
DEFAULT_MAX_ATTEMPTS = 25
#: Backoff: base * 2**(attempt-1) seconds, capped, with "equal jitter" (half fixed).
BACKOFF_BASE = 1.0
BACKOFF_CAP = 3600.0


@dataclass(frozen=True, slots=True)
class StepSpec:
    """One step of a job: its name, its function and whether it runs in a transaction."""

    name: str
    func: Callable[..., Any]
    transactional: bool


@overload
def step(func: F, /) -> F: ...
@overload
def step(*, transactional: bool = True) -> Callable[[F], F]: ...
def step(func: F | None = None, /, *, transactional: bool = True) -> F | Callable[[F], F]:
    """Mark a method as a step of its job.

    A transactional step (the default) is called as ``method(self, tx)`` where ``tx`` is
    an open SQLAlchemy ``Connection``: its writes, the context and the move of the
    recovery point commit together or not at all. Annotated ``sqlalchemy.orm.Session``,
    ``tx`` is an ORM session in that transaction instead.

    On an ``async def`` the step is awaited, and ``tx`` is an ``AsyncConnection`` (or an
    ``AsyncSession`` when annotated so). A job's steps are all sync or all async.

    ``@step(transactional=False)`` marks a step for foreign calls (HTTP APIs, e-mail):
    it is called as ``method(self)`` with no transaction open, and is at-least-once:
    a crash after the call and before its progress commits runs it again. Give the
    foreign API ``self.step_key`` as its idempotency key.
    """

    def mark(f: F) -> F:
        if not callable(f):
            raise JobDefinitionError(f"@acidic.step must decorate a function, not {f!r}")
        f.__acidic_step__ = StepSpec(  # type: ignore[attr-defined]
            name=f.__name__, func=f, transactional=transactional
        )
        return f

    if func is not None:
        return mark(func)
    return mark


@dataclass(slots=True)
class StepState:
    """What the engine gives a job instance while it runs one of its steps."""

    key: str
    ctx: Context
    attempt: int
    retrying: bool
    step: str
    #: Reads the latest payload of a named signal delivered to the run (or None).
    read_signal: Callable[[str], Any] = lambda _name: None
    #: Creates a child run: (job, key, queue, priority) -> its key.
    spawn: Callable[[Job, str | None, str | None, int], str] | None = None
    #: The runs this run spawned, oldest first.
    children: Callable[[], list[Run]] | None = None


class JobDefinition:
    """What acidic derives from a job class once, when the class is defined."""

    __slots__ = ("args_model", "cls", "field_names", "steps", "steps_by_name")

    def __init__(self, cls: type[Job]) -> None:
        self.cls = cls
        self.field_names: tuple[str, ...] = tuple(
            f.name for f in dataclasses.fields(typing.cast(Any, cls))
        )
        self.steps: tuple[StepSpec, ...] = _collect_steps(cls)
        self.steps_by_name = {s.name: s for s in self.steps}
        self.args_model = _args_model(cls, self.field_names)

    @property
    def is_async(self) -> bool:
        """Whether the job's steps are ``async def`` (all of them are, or none)."""
        return bool(self.steps) and inspect.iscoroutinefunction(self.steps[0].func)

    @property
    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]

    def encode_args(self, job: Job) -> dict[str, Any]:
        """Validate ``job``'s arguments strictly and return them as JSON data, in field order."""
        values = {name: getattr(job, name) for name in self.field_names}
        where = f"job {self.cls.__qualname__}"
        try:
            model = self.args_model.model_validate(values, strict=True)
        except pydantic.ValidationError as exc:
            raise SerializationError(f"{where}: invalid arguments: {_describe(exc)}") from exc
        except RecursionError as exc:
            raise SerializationError(self._unstorable(None, values, exc)) from exc
        try:
            encoded: dict[str, Any] = model.model_dump(mode="json")
        except pydantic_core.PydanticSerializationError as exc:
            raise SerializationError(f"{where}: arguments cannot be stored as JSON: {exc}") from exc
        except (ValueError, RecursionError) as exc:  # e.g. pydantic's maximum depth
            raise SerializationError(self._unstorable(model, values, exc)) from exc
        # Values typed Any (or object) pass validation untouched: hold them to the
        # same rules as context values, then prove the stored form reads back equal.
        for name in self.field_names:
            encode_value(encoded[name], f"{where}: argument {name!r}")
        decoded = self.decode_args(encoded)
        for name in self.field_names:
            if decoded[name] != values[name]:
                raise SerializationError(
                    f"{where}: argument {name!r} does not survive JSON: {values[name]!r} "
                    f"would be read back as {decoded[name]!r}"
                )
        return encoded

    def _unstorable(
        self, model: pydantic.BaseModel | None, values: dict[str, Any], exc: BaseException
    ) -> str:
        """Why ``model`` could not be dumped, naming the argument at fault."""
        where = f"job {self.cls.__qualname__}"
        for name, value in values.items():
            if nesting(value) > MAX_DEPTH:
                return (
                    f"{where}: argument {name!r}: lists and dicts nested more than "
                    f"{MAX_DEPTH} levels deep cannot be stored; flatten the value"
                )
        for name in values:
            if model is None:
                break
            try:
                model.model_dump(mode="json", include={name})
            except (ValueError, RecursionError) as field_exc:
                hint = ""
                if isinstance(field_exc, UnicodeDecodeError):
                    hint = (
                        " (a pydantic model of its own stores bytes as UTF-8 text: give it "
                        "ConfigDict(ser_json_bytes='base64', val_json_bytes='base64'))"
                    )
                return f"{where}: argument {name!r} cannot be stored as JSON: {field_exc}{hint}"
        return f"{where}: arguments cannot be stored as JSON: {exc!r}"

    def decode_args(self, data: dict[str, Any]) -> dict[str, Any]:
        """Turn stored JSON arguments back into typed Python values."""
        try:
            model = self.args_model.model_validate(data)
        except pydantic.ValidationError as exc:
            raise SerializationError(
                f"job {self.cls.__qualname__}: stored arguments do not match the fields: "
                f"{_describe(exc)}"
            ) from exc
        return {name: getattr(model, name) for name in self.field_names}

    def instantiate(self, data: dict[str, Any]) -> Job:
        """The job of stored arguments ``data`` (validated by decoding them; not proven
        storable again, as a job built by the application is: they were stored)."""
        token = _FROM_STORAGE.set(self.cls)
        try:
            return self.cls(**self.decode_args(data))
        finally:
            _FROM_STORAGE.reset(token)


#: The job class :meth:`JobDefinition.instantiate` is building from stored arguments.
_FROM_STORAGE: ContextVar[type[Job] | None] = ContextVar("acidic_from_storage", default=None)


def _describe(exc: pydantic.ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(arguments)"
        parts.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)


def _collect_steps(cls: type) -> tuple[StepSpec, ...]:
    by_name: dict[str, StepSpec] = {}
    attr_of: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        for attr, value in vars(klass).items():
            spec = getattr(value, "__acidic_step__", None)
            if not isinstance(spec, StepSpec):
                if attr in attr_of.values() and klass is not cls.__mro__[-1]:
                    raise JobDefinitionError(
                        f"job {cls.__qualname__}: {klass.__qualname__}.{attr} overrides a step "
                        "without @acidic.step; decorate the override too"
                    )
                continue
            owner = attr_of.get(spec.name)
            if owner is not None and owner != attr:
                raise JobDefinitionError(
                    f"job {cls.__qualname__}: duplicate step name {spec.name!r} "
                    f"(attributes {owner!r} and {attr!r})"
                )
            attr_of[spec.name] = attr
            _check_signature(cls, spec)
            by_name[spec.name] = spec  # an override keeps its parent's position
    kinds = {inspect.iscoroutinefunction(s.func) for s in by_name.values()}
    if len(kinds) > 1:
        async_steps = [s.name for s in by_name.values() if inspect.iscoroutinefunction(s.func)]
        raise JobDefinitionError(
            f"job {cls.__qualname__} mixes async steps ({', '.join(async_steps)}) with sync "
            "steps: a job's steps are all async (async def) or all sync"
        )
    return tuple(by_name.values())


def _check_signature(cls: type, spec: StepSpec) -> None:
    try:
        sig = inspect.signature(spec.func)
    except (TypeError, ValueError) as exc:  # pragma: no cover - builtins only
        raise JobDefinitionError(f"step {spec.name}: cannot read its signature") from exc
    required = [
        p
        for p in sig.parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    expected = ["self", "tx"] if spec.transactional else ["self"]
    keyword_only = [p for p in required if p.kind is p.KEYWORD_ONLY]
    if len(required) != len(expected) or keyword_only:
        kind = "a transactional step" if spec.transactional else "a step(transactional=False)"
        shown = ", ".join(expected)
        raise JobDefinitionError(
            f"job {cls.__qualname__}: step {spec.name}{sig} has the wrong signature; "
            f"{kind} is called as {spec.name}({shown})"
        )


def _args_model(cls: type, field_names: tuple[str, ...]) -> type[pydantic.BaseModel]:
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:
        raise JobDefinitionError(
            f"job {cls.__qualname__}: cannot resolve the field annotations: {exc}"
        ) from exc
    fields: dict[str, Any] = {}
    for name in field_names:
        if name in RESERVED_NAMES:
            raise JobDefinitionError(
                f"job {cls.__qualname__}: field {name!r} is reserved for acidic's step attributes"
            )
        if name.startswith("_"):
            raise JobDefinitionError(
                f"job {cls.__qualname__}: field {name!r} starts with '_'; arguments must be public"
            )
        fields[name] = (hints[name], ...)
    try:
        return pydantic.create_model(
            f"{cls.__qualname__}.Arguments",
            __config__=pydantic.ConfigDict(
                arbitrary_types_allowed=False,
                ser_json_inf_nan="strings",
                frozen=True,
                # Not UTF-8 (pydantic's default), which fails on arbitrary bytes.
                ser_json_bytes="base64",
                val_json_bytes="base64",
            ),
            **fields,
        )
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError, TypeError) as exc:
        raise JobDefinitionError(
            f"job {cls.__qualname__}: a field's type cannot be stored as JSON: {exc}"
        ) from exc


@dataclass_transform(kw_only_default=True, field_specifiers=(dataclasses.field,))
class Job:
    """Base class of acidic jobs.

    Declare arguments as annotated fields (like a keyword-only dataclass) and steps as
    methods decorated with :func:`acidic.step`::

        @app.job
        class SendWelcome(acidic.Job):
            user_id: int

            @acidic.step
            def create_account(self, tx): ...

    Class attributes that tune a job:

    ``lock_timeout``
        seconds after which a lock whose owner stopped renewing it is considered
        stale and the run may be taken over (default: the App's, 90 s).
    ``max_attempts``
        how many attempts an enqueued run gets before an error fails it (default 25).
    ``discard_on``
        a tuple of exception classes that fail an enqueued run at once, without retry.
    ``redact``
        names of arguments and context keys whose values ``acidic runs show`` and the
        dashboard replace by ``[redacted]`` (they are stored as usual).
    ``concurrency``
        an :class:`acidic.Limit`: how many runs of the same key may hold a lock at once.

    Pass ``abstract=True`` in the class statement for a base class without steps.
    """

    lock_timeout: ClassVar[float | None] = None
    max_attempts: ClassVar[int] = DEFAULT_MAX_ATTEMPTS
    discard_on: ClassVar[tuple[type[BaseException], ...]] = ()
    redact: ClassVar[tuple[str, ...]] = ()
    concurrency: ClassVar[Limit | None] = None
    __acidic_definition__: ClassVar[JobDefinition]

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclass(kw_only=True)(cls)
        definition = JobDefinition(cls)
        if not definition.steps and not abstract:
            raise JobDefinitionError(
                f"job {cls.__qualname__} has no steps: decorate methods with @acidic.step "
                "(or pass abstract=True for a base class)"
            )
        timeout = cls.__dict__.get("lock_timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
        ):
            raise JobDefinitionError(
                f"job {cls.__qualname__}: lock_timeout must be a positive number of seconds, "
                f"not {timeout!r}"
            )
        attempts = cls.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise JobDefinitionError(
                f"job {cls.__qualname__}: max_attempts must be an int >= 1, not {attempts!r}"
            )
        discard = cls.discard_on
        if not isinstance(discard, tuple) or not all(
            isinstance(e, type) and issubclass(e, BaseException) for e in discard
        ):
            raise JobDefinitionError(
                f"job {cls.__qualname__}: discard_on must be a tuple of exception classes, "
                f"not {discard!r}"
            )
        redact = cls.redact
        if isinstance(redact, str) or not (
            isinstance(redact, tuple | list | set | frozenset)
            and all(isinstance(n, str) and n for n in redact)
        ):
            raise JobDefinitionError(
                f"job {cls.__qualname__}: redact must be a list of field or context key "
                f"names, not {redact!r}"
            )
        cls.redact = tuple(redact)
        limit = cls.concurrency
        if limit is not None:
            if not isinstance(limit, Limit):
                raise JobDefinitionError(
                    f"job {cls.__qualname__}: concurrency must be an acidic.Limit, not {limit!r}"
                )
            limit.check(cls, definition.field_names)
        cls.__acidic_definition__ = definition

    def __post_init__(self) -> None:
        # Fail on the line that builds the job, not later in a worker. (A worker building
        # it from its stored arguments knows they are storable; decode_args validated them.)
        if _FROM_STORAGE.get() is not type(self):
            type(self).__acidic_definition__.encode_args(self)

    def unique_by(self) -> Any:
        """What identifies this job's run when no key is given: by default, all its arguments.

        Override to deduplicate on fewer fields; return any JSON-storable value.
        """
        return None

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retrying after the ``attempt``-th attempt failed.

        Default: exponential (1 s, 2 s, 4 s, ...) capped at one hour, with jitter: a
        random value between half and all of it, so that failures do not retry in step.
        Override for another policy.
        """
        ceiling: float = min(BACKOFF_CAP, BACKOFF_BASE * 2.0 ** max(attempt - 1, 0))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not crypto

    # -- available inside a running step -------------------------------------------------

    def _state(self) -> StepState:
        state: StepState | None = self.__dict__.get("_acidic_state")
        if state is None:
            raise NotInStepError(
                f"{type(self).__qualname__}: this attribute is only available while a step runs"
            )
        return state

    @property
    def key(self) -> str:
        """The run's idempotency key."""
        return self._state().key

    @property
    def step_key(self) -> str:
        """A stable idempotency key for foreign APIs, the same for every attempt of this
        step of this run (``acidic-`` and 48 hex digits)."""
        state = self._state()
        return step_key(state.key, state.step)

    @property
    def ctx(self) -> Context:
        """The run's persisted context."""
        return self._state().ctx

    @property
    def attempt(self) -> int:
        """How many times this run has been started (claimed to execute), this time included."""
        return self._state().attempt

    def signal(self, name: str) -> Any:
        """The payload of the latest signal ``name`` delivered to this run (see
        :meth:`acidic.App.signal`), or None if none was."""
        return self._state().read_signal(name)

    def spawn(
        self, job: Job, key: str | None = None, *, queue: str | None = None, priority: int = 0
    ) -> str:
        """Create a child run of ``job`` for a worker and return its key.

        In a transactional step the child is created in the step's transaction: it
        exists only if the step commits. Without ``key``, the key is derived from this
        run's key, the child's job and its arguments, so a step that runs again
        creates no second child. ``queue`` defaults to this run's queue. Return
        ``acidic.Await(*keys)`` to continue once the children are finished.
        """
        spawn = self._state().spawn
        if spawn is None:  # pragma: no cover - every runner provides it
            raise NotInStepError("spawn() is not available here")
        return spawn(job, key, queue, priority)

    def children(self) -> list[Run]:
        """The runs this run spawned (:meth:`spawn`), oldest first, as stored now: their
        status, result and error (a child that failed for good has status ``failed``
        and its :class:`acidic.RunError`)."""
        children = self._state().children
        if children is None:  # pragma: no cover - every runner provides it
            raise NotInStepError("children() is not available here")
        return children()

    @property
    def retrying(self) -> bool:
        """True when this step was started before and did not finish (it errored, halted,
        or its process died during a non-transactional step)."""
        return self._state().retrying
