"""The policy: :class:`Idempotency`, its options, and the decisions the middlewares ask
it for (which requests are handled, which need a key, who the caller is)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection

from .._app import App
from .._encoding import MAX_KEY_LENGTH
from .._errors import InvalidArgumentError
from ._records import Records, register
from ._request import MAX_CLIENT_KEY_LENGTH, IdempotentRequest, RequestInfo, identify

__all__ = ["Idempotency"]


def _seconds(value: float | dt.timedelta, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise InvalidArgumentError(
            f"{what} must be a positive number of seconds or a timedelta, not {value!r}"
        )
    return float(seconds)


def _size(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"{what} must be a number of bytes (an int >= 0), not {value!r}")
    return value


def _default_store_status(status: int) -> bool:
    return status < 500


class Idempotency:
    """Idempotent HTTP requests on an acidic :class:`~acidic.App`: the policy the ASGI
    and WSGI middlewares apply, and the records they keep (as runs of the App).

    - ``caller(info)`` returns the identity of the request's caller (an account id,
      the API key, ...): keys are scoped per caller and the caller is part of the
      fingerprint. Default: every request has the same (anonymous) caller.
    - ``methods``: the methods handled (default POST and PATCH); other requests pass
      through untouched, whatever headers they carry.
    - ``required``: whether a request of those methods without a key is refused with
      400 (True), let through (False, the default), or a function of
      ``(method, path)`` deciding per endpoint.
    - ``expires``: how long a key lives after its response was stored (default
      24 hours; seconds or a timedelta); an expired key may be used again.
    - ``max_key_length`` (default 200, at most 200), ``max_request_size`` (request
      bodies are held in memory to fingerprint them; larger ones get 413; default
      10 MiB), ``max_response_size`` (larger responses are sent but not stored, like
      a 5xx; default 1 MiB).
    - ``heartbeat``: seconds between renewals of the locks of records whose handlers
      are running (default a third of the App's ``lock_timeout``). The record of a
      request whose server died is taken over by a retry once the App's
      ``lock_timeout`` has passed since the last renewal.
    - ``store_status(status)``: which final statuses are stored; default: below 500.
      Whatever it says, an answer asking the client to retry later (a 429, a 4xx with
      ``Retry-After``) is not stored.
    - ``replay_header``: the response header marking a replay (``Idempotent-Replayed:
      true``).

    The options are attributes of the same names (``expires`` in seconds); changing
    them affects the next requests.
    """

    def __init__(
        self,
        app: App,
        *,
        caller: Callable[[RequestInfo], str | None] | None = None,
        methods: Collection[str] = ("POST", "PATCH"),
        required: bool | Callable[[str, str], bool] = False,
        expires: float | dt.timedelta = dt.timedelta(hours=24),
        max_key_length: int = 200,
        max_request_size: int = 10 * 1024 * 1024,
        max_response_size: int = 1024 * 1024,
        heartbeat: float | None = None,
        store_status: Callable[[int], bool] = _default_store_status,
        replay_header: str = "Idempotent-Replayed",
    ) -> None:
        if not isinstance(app, App):
            raise InvalidArgumentError(f"Idempotency needs an acidic.App, not {app!r}")
        if isinstance(methods, str) or not all(isinstance(m, str) and m for m in methods):
            raise InvalidArgumentError(
                f"methods must be a collection of HTTP method names, not {methods!r}"
            )
        if (
            isinstance(max_key_length, bool)
            or not isinstance(max_key_length, int)
            or not 0 < max_key_length <= MAX_CLIENT_KEY_LENGTH
        ):
            raise InvalidArgumentError(
                f"max_key_length must be an int from 1 to {MAX_CLIENT_KEY_LENGTH} (the keys "
                f"derived from it add a caller scope and must fit acidic's {MAX_KEY_LENGTH}), "
                f"not {max_key_length!r}"
            )
        if not isinstance(replay_header, str) or not replay_header:
            raise InvalidArgumentError(
                f"replay_header must be a header name, not {replay_header!r}"
            )
        self.app = app
        self.caller = caller
        self.methods = frozenset(m.upper() for m in methods)
        self.required = required
        self.expires = _seconds(expires, "expires")
        self.max_key_length = max_key_length
        self.max_request_size = _size(max_request_size, "max_request_size")
        self.max_response_size = _size(max_response_size, "max_response_size")
        #: The lock timeout of the records (the App's ``lock_timeout``).
        self.lock_timeout = register(app)
        self.heartbeat = (
            max(self.lock_timeout / 3, 0.05)
            if heartbeat is None
            else _seconds(heartbeat, "heartbeat")
        )
        if self.heartbeat >= self.lock_timeout:
            raise InvalidArgumentError(
                f"heartbeat ({self.heartbeat} s) must be shorter than lock_timeout "
                f"(the App's lock_timeout, {self.lock_timeout} s), or locks expire under "
                "running handlers"
            )
        self.store_status = store_status
        self.replay_header = replay_header.lower()
        self._records = Records(self, self.heartbeat, self.lock_timeout)

    def purge_expired(self, batch: int = 1000) -> int:
        """Delete every expired record (succeeded, failed or cancelled, stored more than
        ``expires`` ago), ``batch`` per transaction; return how many."""
        return self._records.purge_expired(batch)

    def close(self) -> None:
        """Stop the heartbeat thread (the App stays open: close it yourself)."""
        self._records.close()

    # -- what the middlewares ask -----------------------------------------------------

    def _applies(self, method: str) -> bool:
        """Whether requests of ``method`` are handled at all."""
        return method.upper() in self.methods

    def _requires_key(self, method: str, path: str) -> bool:
        """Whether a request without a key is refused with 400."""
        if callable(self.required):
            return bool(self.required(method, path))
        return bool(self.required)

    def _identify(self, key: str, info: RequestInfo, body_sha256: str) -> IdempotentRequest:
        """The identity of a keyed request: its record key and fingerprint."""
        who = "" if self.caller is None else self.caller(info)
        if who is None:
            who = ""
        if not isinstance(who, str):
            raise InvalidArgumentError(
                f"the caller function must return a str or None, not {who!r}"
            )
        return identify(key, info, who, body_sha256)
