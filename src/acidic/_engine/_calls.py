"""How a step is called: sync or async, given a ``Connection``, an ORM ``Session``, an
``AsyncConnection`` or an ``AsyncSession`` in the step's transaction.

The runner is the same for every kind of job (:mod:`._runner`): it opens the step's
transaction on a sync SQLAlchemy ``Connection`` and calls :func:`call_step`. For an async
job that runner executes inside SQLAlchemy's greenlet bridge (see :mod:`._aio`): its
``Connection`` drives an asyncio driver, and the step's coroutine is awaited on the event
loop (``await_``) while the runner's frame is suspended in its greenlet. So the I/O code
exists once, and the async path does no thread hand-off per statement.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, Final

import sqlalchemy as sa

from .._errors import AcidicError, JobDefinitionError
from .._job import Job, StepSpec

__all__ = ["call_step", "wants_session"]

#: The parameter annotations that ask for an ORM session instead of a connection.
_SESSION_NAMES = frozenset({"Session", "AsyncSession"})


@functools.lru_cache(maxsize=4096)
def wants_session(spec: StepSpec) -> bool:
    """Whether the transactional step's second parameter is annotated as an ORM session
    (``sqlalchemy.orm.Session`` or ``sqlalchemy.ext.asyncio.AsyncSession``)."""
    params = list(inspect.signature(spec.func).parameters.values())
    if len(params) < 2:
        return False
    annotation = params[1].annotation
    if isinstance(annotation, str):
        try:
            annotation = typing.get_type_hints(spec.func).get(params[1].name, annotation)
        except Exception:  # names the module cannot resolve: judge by the name
            return annotation.rsplit(".", 1)[-1] in _SESSION_NAMES
    if not isinstance(annotation, type):
        return False
    return any(
        k.__name__ in _SESSION_NAMES and "sqlalchemy" in k.__module__ for k in annotation.__mro__
    )


def call_step(
    spec: StepSpec,
    job: Job,
    conn: sa.Connection | None,
    *,
    async_engine: Any,
    session_factory: Callable[..., Any] | None,
    async_session_factory: Callable[..., Any] | None,
) -> object:
    """Call the step ``spec`` of ``job``: with ``conn`` (in the step's transaction), or
    with nothing for a non-transactional step; return what it returned."""
    qualname = f"step {spec.name} of job {type(job).__qualname__}"
    if not inspect.iscoroutinefunction(spec.func):
        if conn is None:
            return spec.func(job)
        if not wants_session(spec):
            return spec.func(job, conn)
        factory = session_factory or sa.orm.Session
        return _with_session(
            spec, job, factory(bind=conn, join_transaction_mode=_JOINED), qualname, None
        )
    if async_engine is None:
        raise AcidicError(
            f"{qualname} is async and was called outside acidic's asyncio path "
            "(use await app.run_async, or a worker)"
        )
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession  # noqa: PLC0415
    from sqlalchemy.util import await_  # noqa: PLC0415

    if conn is None:
        return await_(spec.func(job))
    aconn = AsyncConnection(async_engine, conn)
    if not wants_session(spec):
        return await_(spec.func(job, aconn))
    session = (async_session_factory or AsyncSession)(bind=aconn, join_transaction_mode=_JOINED)
    return _with_session(spec, job, session, qualname, await_)


#: A session joins the step's transaction and never ends it: commit and rollback
#: raise (below), close leaves the transaction to acidic.
_JOINED: Final = "rollback_only"


def _with_session(
    spec: StepSpec,
    job: Job,
    session: Any,
    qualname: str,
    await_: Callable[[Any], Any] | None,
) -> object:
    """Call the step with an ORM session in its transaction: flush what it left
    unflushed; refuse its commit and rollback (and fail the step even if it caught
    that error: its writes would otherwise commit without what it meant)."""
    refused: list[str] = []
    sync_session = getattr(session, "sync_session", session)

    def refusal(what: str) -> JobDefinitionError:
        refused.append(what)
        return JobDefinitionError(
            f"{qualname} called session.{what}(): a transactional step must leave commit "
            "and rollback to acidic, which commits its writes with its progress"
        )

    def refuse_sync(what: str) -> Callable[..., None]:
        def refuse(*args: object, **kwargs: object) -> None:
            raise refusal(what)

        return refuse

    def refuse_async(what: str) -> Callable[..., Any]:
        async def refuse(*args: object, **kwargs: object) -> None:
            raise refusal(what)

        return refuse

    for what in ("commit", "rollback"):
        sync_session.__dict__[what] = refuse_sync(what)
        if session is not sync_session:
            session.__dict__[what] = refuse_async(what)
    try:
        returned = spec.func(job, session) if await_ is None else await_(spec.func(job, session))
        if refused:
            raise JobDefinitionError(
                f"{qualname} called session.{refused[0]}() and went on; nothing of the "
                "step is committed"
            )
        sync_session.flush()  # in the greenlet for an AsyncSession: no await needed
        return returned
    finally:
        sync_session.close()
