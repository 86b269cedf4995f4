"""A request under an idempotency key: what identifies it, the run keys derived from
it, and how a handler finds it (``idempotent_request``).

Two namespaces of run keys, disjoint whatever characters a client's key holds:

- the **record** of a key: ``http-request:<scope>:<key>``;
- the **jobs** a handler runs for the request (``IdempotentRequest.job_key(name)``):
  ``http:<scope>:<key>/<name>``, the name without ``/`` (so the key ends at the last
  ``/``, and two (key, name) pairs never give one job key).

``<scope>`` is the first 12 hexadecimal digits of the SHA-256 of the caller identity.
The prefixes differ at their fifth character, so no record key is a job key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._encoding import MAX_KEY_LENGTH
from .._errors import AcidicError, InvalidArgumentError
from ._fingerprint import HEADER

__all__ = [
    "JOB_PREFIX",
    "MAX_CLIENT_KEY_LENGTH",
    "MAX_JOB_NAME",
    "RECORD_PREFIX",
    "SCOPE_KEY",
    "IdempotentRequest",
    "MissingKeyError",
    "RequestInfo",
    "idempotent_request",
    "identify",
]

#: Where the middlewares put the :class:`IdempotentRequest` in the ASGI scope or the
#: WSGI environ (None there when the request carries no key).
SCOPE_KEY = "acidic.idempotency"
#: The prefix of the run key of a request's record. (Development versions used ``http``,
#: the prefix of the job keys: a key holding ``/`` then met another key's jobs.)
RECORD_PREFIX = "http-request"
#: The prefix of the keys of the jobs a handler runs (``IdempotentRequest.job_key``).
JOB_PREFIX = "http"
#: Longest name accepted by :meth:`IdempotentRequest.job_key`.
MAX_JOB_NAME = 36
_SCOPE_DIGITS = 12
#: The longest client key whose job keys fit acidic's limit: the longest run key
#: derived from a client key is a job key, ``http:`` + scope + ``:`` + key + ``/`` + name.
MAX_CLIENT_KEY_LENGTH = MAX_KEY_LENGTH - len(JOB_PREFIX) - 1 - _SCOPE_DIGITS - 1 - 1 - MAX_JOB_NAME


class MissingKeyError(AcidicError):
    """An endpoint that requires an ``Idempotency-Key`` was called without one.

    Raised by ``idempotent_request(request, required=True)`` and the per-endpoint
    helpers; the middlewares answer it with 400 when it reaches them.
    """


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the ``caller`` function sees of a request."""

    method: str
    #: The fingerprinted target: the path (escapes normalised) and ``?query`` if any.
    path: str
    #: Request headers, names lowercase, repeated headers joined with ``", "``.
    headers: Mapping[str, str]
    #: The ASGI scope or the WSGI environ, for what an earlier middleware put there
    #: (``scope["user"]``, ``environ["REMOTE_USER"]``, ...).
    native: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """A request being handled under an idempotency key.

    The middlewares put it in the ASGI scope / WSGI environ; a handler gets it with
    :func:`idempotent_request` (or a per-endpoint helper).
    """

    #: The key the client sent.
    key: str
    #: The run key of the acidic run that records this request.
    record_key: str
    method: str
    path: str
    #: SHA-256 (hex) of the body, of its canonical JSON for JSON bodies.
    body_sha256: str
    #: SHA-256 (hex) of the caller identity (of "" when the application gives none).
    caller_sha256: str

    def job_key(self, name: str = "job") -> str:
        """An acidic key for a job the handler runs for this request: ``app.run(job,
        key=request.job_key())``. A retried request gets the same key, so its job
        resumes at its recovery point (or returns its stored result); another key or
        another caller never gets it."""
        if not isinstance(name, str) or not 0 < len(name) <= MAX_JOB_NAME or "/" in name:
            raise InvalidArgumentError(
                f"job_key(name) takes 1 to {MAX_JOB_NAME} characters without '/', not {name!r}"
            )
        return f"{JOB_PREFIX}:{self.caller_sha256[:_SCOPE_DIGITS]}:{self.key}/{name}"


def identify(key: str, info: RequestInfo, caller: str, body_sha256: str) -> IdempotentRequest:
    """The identity of a request under ``key`` from ``caller`` ("" when anonymous)."""
    caller_sha256 = hashlib.sha256(caller.encode("utf-8", "surrogatepass")).hexdigest()
    return IdempotentRequest(
        key=key,
        record_key=f"{RECORD_PREFIX}:{caller_sha256[:_SCOPE_DIGITS]}:{key}",
        method=info.method.upper(),
        path=info.path,
        body_sha256=body_sha256,
        caller_sha256=caller_sha256,
    )


def idempotent_request(request: Any, *, required: bool = False) -> IdempotentRequest | None:
    """The :class:`IdempotentRequest` the middleware is handling, from a request object
    (Starlette/FastAPI ``Request``, Flask/Werkzeug or Django request) or an ASGI scope
    or WSGI environ; None when the request carries no key.

    With ``required``, a request without a key raises :class:`MissingKeyError`, which
    the middlewares answer with 400. Raises :class:`acidic.AcidicError` when no
    idempotency middleware saw the request.
    """
    native = getattr(request, "scope", None)
    if native is None:
        native = getattr(request, "environ", request)
    if not isinstance(native, Mapping) or SCOPE_KEY not in native:
        raise AcidicError(
            "no acidic.http middleware handled this request: install IdempotencyMiddleware "
            "(ASGI) or IdempotencyWSGIMiddleware (WSGI) around the application"
        )
    found = native[SCOPE_KEY]
    if found is None and required:
        raise MissingKeyError(f"this endpoint requires an {HEADER} header")
    return found if isinstance(found, IdempotentRequest) else None
