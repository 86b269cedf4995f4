"""Flask helpers: installing the middleware, and a view decorator that requires an
``Idempotency-Key``.

::

    import acidic.http.flask

    acidic.http.flask.install(flask_app, idem)

    @flask_app.post("/rides")
    @acidic.http.flask.key_required
    def create_ride():
        request_key = acidic.http.idempotent_request(flask.request)
        ...
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

import flask

from .._errors import KeyLockedError
from . import _problems
from ._policy import Idempotency
from ._problems import Problem
from ._request import idempotent_request
from ._responses import UNSTORED_KEY
from ._wsgi import IdempotencyWSGIMiddleware

__all__ = ["install", "key_required"]

_F = TypeVar("_F", bound=Callable[..., Any])


def _response(problem: Problem) -> flask.Response:
    body = problem.body()
    return flask.Response(body, problem.status, problem.response_headers(body))


def install(flask_app: flask.Flask, idempotency: Idempotency) -> None:
    """Wrap ``flask_app.wsgi_app`` in :class:`~acidic.http.IdempotencyWSGIMiddleware`,
    and answer an :class:`acidic.KeyLockedError` raised by a view (its acidic job still
    locked by an earlier attempt of the request that died) with 409 instead of Flask's
    500. That 409 is never stored: the client's retry runs the view again."""

    def locked(exc: KeyLockedError) -> flask.Response:
        # Flask answers inside the wrapped application: tell the middleware that this
        # answer is not the request's outcome, so that it releases the record.
        flask.request.environ[UNSTORED_KEY] = exc
        return _response(_problems.job_in_use(str(exc)))

    flask_app.register_error_handler(KeyLockedError, locked)
    flask_app.wsgi_app = IdempotencyWSGIMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, idempotency
    )


def key_required(view: _F) -> _F:
    """Decorate a Flask view so that a request without an ``Idempotency-Key`` gets a
    400 problem+json response instead of running the view."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if idempotent_request(flask.request) is None:
            return _response(_problems.missing_key("Idempotency-Key"))
        return view(*args, **kwargs)

    return cast(_F, wrapper)
