"""``acidic.django.step``: :func:`acidic.step` for jobs whose steps write through the
Django ORM, where a transactional step may leave out ``tx``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from .._job import step as acidic_step

__all__ = ["step"]

F = TypeVar("F", bound=Callable[..., Any])


@overload
def step(func: F, /) -> F: ...
@overload
def step(*, transactional: bool = True) -> Callable[[F], F]: ...
def step(func: F | None = None, /, *, transactional: bool = True) -> F | Callable[[F], F]:
    """Mark a method as a step, as :func:`acidic.step` does; a transactional step may be
    ``method(self)``: run through ``acidic.django.app``, it executes inside
    ``transaction.atomic`` on Django's connection, where its ORM writes commit with its
    progress, so it needs no ``tx`` (declare ``tx`` to get a SQLAlchemy Connection on
    that same connection and transaction)."""

    def mark(f: F) -> F:
        if transactional and _without_tx(f):
            called = _tx_ignored(f)
            acidic_step(transactional=True)(called)
            f.__acidic_step__ = called.__acidic_step__  # type: ignore[attr-defined]
            return f
        return acidic_step(transactional=transactional)(f)

    if func is not None:
        return mark(func)
    return mark


def _without_tx(f: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(f).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - builtins only
        return False
    return len(params) == 1 and params[0].kind is params[0].POSITIONAL_OR_KEYWORD


def _tx_ignored(f: Callable[..., Any]) -> Callable[..., Any]:
    # Not functools.wraps: its __wrapped__ would give the wrapper f's signature, and
    # acidic calls every transactional step with tx.
    def called(self: Any, tx: Any) -> Any:
        return f(self)

    called.__name__ = f.__name__
    called.__qualname__ = f.__qualname__
    return called
