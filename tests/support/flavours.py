"""The test jobs in each flavour of step: sync with a ``Connection`` (as written), async
with an ``AsyncConnection``, sync with an ORM ``Session``, async with an ``AsyncSession``.

The semantics tests are written once, with sync jobs; a module that uses the
``flavour`` fixture (tests/conftest.py) runs each test once per flavour. A flavour
swaps each job's definition for one whose steps are wrapped:

* ``async``: ``async def step(self, tx: AsyncConnection)`` running the sync body through
  ``await tx.run_sync(...)`` (SQLAlchemy's own bridge), non-transactional steps awaited;
* ``session``: ``def step(self, tx: Session)``, the body given ``tx.connection()``;
* ``async_session``: ``async def step(self, tx: AsyncSession)``, the body run by
  ``await tx.run_sync(...)`` on the session's connection.

So every step of every flavour reaches the database through what acidic gave it, and
the job code under test is the same. Child processes get the flavour through
``$ACIDIC_TEST_FLAVOUR`` (see :func:`apply_from_environment`).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

import acidic
from acidic._job import StepSpec

FLAVOURS = ("sync", "async", "session", "async_session")
#: The flavours of the modules that drive real processes (SIGKILL, SIGSTOP, races against
#: a lock timeout): sync, the sync ORM session, and async jobs through an ``AsyncSession``,
#: whose steps run on the same async runner and ``AsyncConnection`` as the ``async``
#: flavour (which the in-process semantics tests cover). A quarter of CI's time saved
#: where each test costs seconds of processes, with every kind of step still killed.
PROCESS_FLAVOURS = ("sync", "session", "async_session")
ENVIRONMENT = "ACIDIC_TEST_FLAVOUR"


def _transactional(func: Callable[..., Any], flavour: str) -> Callable[..., Any]:
    if flavour == "async":

        async def on_async_connection(self: acidic.Job, tx: AsyncConnection) -> Any:
            return await tx.run_sync(lambda conn: func(self, conn))

        wrapped: Callable[..., Any] = on_async_connection
    elif flavour == "session":

        def on_session(self: acidic.Job, tx: Session) -> Any:
            return func(self, tx.connection())

        wrapped = on_session
    else:

        async def on_async_session(self: acidic.Job, tx: AsyncSession) -> Any:
            return await tx.run_sync(lambda session: func(self, session.connection()))

        wrapped = on_async_session
    return functools.wraps(func)(wrapped)


def _foreign(func: Callable[..., Any], flavour: str) -> Callable[..., Any]:
    if flavour == "session":
        return func

    @functools.wraps(func)
    async def awaited(self: acidic.Job) -> Any:
        await asyncio.sleep(0)  # a real suspension on the loop
        return func(self)

    return awaited


def _spec(spec: StepSpec, flavour: str) -> StepSpec:
    func = (_transactional if spec.transactional else _foreign)(spec.func, flavour)
    # functools.wraps copied __wrapped__ and the sync annotations: drop both, so that
    # the step's own parameter annotation (AsyncSession, Session) is what acidic reads.
    func.__dict__.pop("__wrapped__", None)
    func.__annotations__ = {}
    if spec.transactional:
        func.__annotations__["tx"] = {
            "async": AsyncConnection,
            "session": Session,
            "async_session": AsyncSession,
        }[flavour]
    return StepSpec(name=spec.name, func=func, transactional=spec.transactional)


#: The classes in a flavour now.
_SWAPPED: set[type[acidic.Job]] = set()


def _swap(cls: type[acidic.Job], flavour: str) -> Any:
    _SWAPPED.add(cls)
    original = cls.__acidic_definition__
    definition = copy.copy(original)
    definition.steps = tuple(_spec(s, flavour) for s in original.steps)
    definition.steps_by_name = {s.name: s for s in definition.steps}
    cls.__acidic_definition__ = definition
    return original


@contextlib.contextmanager
def flavoured(classes: Iterable[type[acidic.Job]], flavour: str) -> Iterator[None]:
    """The jobs ``classes`` in ``flavour`` while inside; restored afterwards."""
    if flavour == "sync":
        yield
        return
    originals = {cls: _swap(cls, flavour) for cls in dict.fromkeys(classes)}
    previous = os.environ.get(ENVIRONMENT)
    os.environ[ENVIRONMENT] = flavour  # for the child processes the test starts
    try:
        yield
    finally:
        for cls, original in originals.items():
            cls.__acidic_definition__ = original
            _SWAPPED.discard(cls)
        if previous is None:
            os.environ.pop(ENVIRONMENT, None)
        else:
            os.environ[ENVIRONMENT] = previous


def apply_from_environment(classes: Iterable[type[acidic.Job]]) -> None:
    """In a child process: the flavour of the test that started it, for good (a class
    already in a flavour, in the test's own process, is left as it is)."""
    flavour = os.environ.get(ENVIRONMENT, "sync")
    if flavour == "sync":
        return
    for cls in dict.fromkeys(classes):
        if cls not in _SWAPPED:
            _swap(cls, flavour)


__all__ = ["ENVIRONMENT", "FLAVOURS", "PROCESS_FLAVOURS", "apply_from_environment", "flavoured"]
