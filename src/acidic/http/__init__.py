"""Idempotent HTTP APIs: the ``Idempotency-Key`` header for ASGI and WSGI applications.

A request carrying ``Idempotency-Key: "<key>"`` runs its handler once; its final
response is stored in acidic's database (as a run of the App) and replayed, byte for
byte and marked ``Idempotent-Replayed: true``, to every repeat of the same request
under that key. The key while its first request is in flight answers 409, the key
with another request 422, a missing key where one is required 400, all as RFC 9457
``application/problem+json``. See docs/http.md.

::

    idem = acidic.http.Idempotency(app, caller=lambda req: req.headers.get("authorization"))
    fastapi_app.add_middleware(acidic.http.IdempotencyMiddleware, idempotency=idem)
    flask_app.wsgi_app = acidic.http.IdempotencyWSGIMiddleware(flask_app.wsgi_app, idem)

In a handler, ``acidic.http.idempotent_request(request)`` is the request's
:class:`IdempotentRequest`, whose ``job_key()`` keys the acidic job the handler runs.
Per endpoint: ``acidic.http.fastapi.IdempotencyKey`` (a FastAPI dependency) and
``acidic.http.flask.key_required`` (a Flask view decorator) make a key required there.
"""

from ._asgi import IdempotencyMiddleware
from ._policy import Idempotency
from ._request import IdempotentRequest, MissingKeyError, RequestInfo, idempotent_request
from ._wsgi import IdempotencyWSGIMiddleware

__all__ = [
    "Idempotency",
    "IdempotencyMiddleware",
    "IdempotencyWSGIMiddleware",
    "IdempotentRequest",
    "MissingKeyError",
    "RequestInfo",
    "idempotent_request",
]
