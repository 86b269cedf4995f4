"""Final responses: which are stored, and their stored (replayed) form."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

__all__ = ["NOT_STORED_HEADERS", "UNSTORED_KEY", "StoredResponse", "asks_retry", "too_large"]

#: Response headers never stored nor replayed: they describe one connection or one
#: response (hop-by-hop, dates, lengths recomputed on replay), or carry session
#: secrets (cookies) that should not sit in the runs table.
NOT_STORED_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "date",
        "server",
        "content-length",
        "set-cookie",
    }
)

#: Where a framework helper marks, in the WSGI environ, a response it made for an
#: error raised by acidic (a job's KeyLockedError): the exception, so that the
#: middleware releases the record with it instead of storing the answer.
UNSTORED_KEY = "acidic.http.unstored"


def asks_retry(status: int, headers: Iterable[tuple[str, str]]) -> str | None:
    """Why a response that asks the client to send the request again is not stored,
    or None. Such an answer is not the request's outcome, whoever made it (acidic, a
    rate limit or a lock in a middleware before the view, the view itself): a 429,
    and any other 4xx with ``Retry-After``."""
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        return "the response was HTTP 429 (retry later), which is not stored"
    if 400 <= status < 500 and any(n.lower() == "retry-after" for n, _ in headers):
        return f"the response was HTTP {status} with Retry-After (retry later), which is not stored"
    return None


def too_large(limit: int, size: int) -> str:
    """Why a response of ``size`` (or more) bytes is not stored under ``limit``."""
    return (
        f"the response body exceeds max_response_size ({limit} bytes; at least {size} were "
        "sent), so it is not stored"
    )


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A final response as stored and replayed."""

    status: int
    #: (name, value) pairs in order, as the handler sent them (minus the ones acidic
    #: does not store, see ``NOT_STORED_HEADERS``).
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def kept(self) -> StoredResponse:
        """This response without the headers that are not stored."""
        return StoredResponse(
            self.status,
            tuple((n, v) for n, v in self.headers if n.lower() not in NOT_STORED_HEADERS),
            self.body,
        )

    def to_json(self) -> dict[str, Any]:
        """The stored form: the body as UTF-8 text when it is valid UTF-8, else base64."""
        try:
            text, encoding = self.body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(self.body).decode("ascii"), "base64"
        return {
            "status": self.status,
            "headers": [list(h) for h in self.headers],
            "body": text,
            "encoding": encoding,
        }

    @classmethod
    def from_json(cls, data: Any) -> StoredResponse | None:
        """Read a stored response back; None if ``data`` is not one."""
        if not isinstance(data, dict):
            return None
        try:
            text = data["body"]
            if data["encoding"] == "utf-8":
                body = text.encode("utf-8")
            elif data["encoding"] == "base64":
                body = base64.b64decode(text, validate=True)
            else:
                return None
            headers = tuple((str(n), str(v)) for n, v in data["headers"])
            return cls(int(data["status"]), headers, body)
        except (KeyError, TypeError, ValueError, binascii.Error):
            return None

    def replay_headers(self, replay_header: str) -> list[tuple[str, str]]:
        """The stored headers, Content-Length, and the header marking a replay."""
        return [
            *self.headers,
            ("content-length", str(len(self.body))),
            (replay_header, "true"),
        ]

    @property
    def reason(self) -> str:
        """The standard reason phrase of the status (WSGI needs one)."""
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Unknown"
