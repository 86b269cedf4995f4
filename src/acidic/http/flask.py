"""Flask helpers: a view decorator that requires an ``Idempotency-Key``.

::

    from acidic.http.flask import key_required

    @flask_app.post("/rides")
    @key_required
    def create_ride():
        request_key = acidic.http.idempotent_request(flask.request)
        ...

The :class:`~acidic.http.IdempotencyWSGIMiddleware` must wrap ``flask_app.wsgi_app``:
it does the work; the decorator only answers a request without a key with 400.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import flask

from . import _problems
from ._core import idempotent_request

__all__ = ["key_required"]

F = TypeVar("F", bound=Callable[..., Any])


def key_required(view: F) -> F:
    """Decorate a Flask view so that a request without an ``Idempotency-Key`` gets a
    400 problem+json response instead of running the view."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if idempotent_request(flask.request) is None:
            problem = _problems.missing_key("Idempotency-Key")
            body = problem.body()
            return flask.Response(body, problem.status, problem.response_headers(body))
        return view(*args, **kwargs)

    return cast(F, wrapper)
