"""FastAPI (and Starlette) helpers: a dependency that requires an ``Idempotency-Key``.

::

    from acidic.http.fastapi import IdempotencyKey

    @api.post("/rides", status_code=201)
    def create_ride(ride: RideIn, idem: IdempotencyKey) -> RideOut:
        return app.run(CreateRide(...), key=idem.job_key("ride"))

The :class:`~acidic.http.IdempotencyMiddleware` must be installed: it does the work; the
dependency only refuses a request without a key (400) and hands the endpoint the
:class:`~acidic.http.IdempotentRequest`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from ._request import IdempotentRequest, idempotent_request

__all__ = ["IdempotencyKey", "require_key"]


def require_key(request: Request) -> IdempotentRequest:
    """FastAPI dependency: the request's :class:`IdempotentRequest`; a request without
    a key is answered 400 (by the middleware, as problem+json)."""
    found = idempotent_request(request, required=True)
    assert found is not None  # required=True raised otherwise
    return found


#: ``idem: IdempotencyKey`` in an endpoint's parameters requires a key there.
IdempotencyKey = Annotated[IdempotentRequest, Depends(require_key)]
