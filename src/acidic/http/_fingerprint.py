"""Reading the ``Idempotency-Key`` header and fingerprinting a request.

The key is a Structured Field string (RFC 8941 ``sf-string``), as
draft-ietf-httpapi-idempotency-key-header specifies: ``"8e03978e-40d5-43e8"``. Because
many clients (Stripe's libraries among them) send the bare value, a value that does not
start with a double quote is accepted too when it is a run of visible ASCII characters
other than ``"``, ``,``, ``;`` and ``\\``. Anything else is refused with a message naming
the problem: the caller answers 400.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from urllib.parse import quote, unquote_to_bytes

from .._errors import AcidicError

__all__ = [
    "HEADER",
    "InvalidKeyHeaderError",
    "body_digest",
    "canonical_path",
    "is_json",
    "parse_key",
]

#: The request header that carries the key (compared case-insensitively).
HEADER = "Idempotency-Key"

_BARE_REFUSED = frozenset('",;\\')


class InvalidKeyHeaderError(AcidicError, ValueError):
    """The ``Idempotency-Key`` header is malformed, empty, too long or repeated."""


def parse_key(values: Sequence[str], max_length: int) -> str | None:
    """The key carried by the header ``values`` (one per header line, as received),
    None when there is none; :class:`InvalidKeyHeaderError` when it is unusable."""
    if not values:
        return None
    if len(values) > 1:
        raise InvalidKeyHeaderError(
            f"the {HEADER} header was sent {len(values)} times; send it exactly once"
        )
    raw = values[0].strip(" \t")
    key = _sf_string(raw) if raw.startswith('"') else _bare(raw)
    if not key:
        raise InvalidKeyHeaderError(f"the {HEADER} header is empty; send a non-empty key")
    if len(key) > max_length:
        raise InvalidKeyHeaderError(
            f"the {HEADER} is {len(key)} characters long; the limit is {max_length}"
        )
    return key


def _sf_string(raw: str) -> str:
    """An RFC 8941 sf-string: DQUOTE *( unescaped / "\\" DQUOTE / "\\" "\\" ) DQUOTE."""
    out: list[str] = []
    i = 1
    while i < len(raw):
        char = raw[i]
        if char == "\\":
            if i + 1 >= len(raw) or raw[i + 1] not in '"\\':
                raise InvalidKeyHeaderError(
                    f'the {HEADER} header has a backslash that escapes neither " nor \\ '
                    f"at position {i}"
                )
            out.append(raw[i + 1])
            i += 2
            continue
        if char == '"':
            rest = raw[i + 1 :].strip(" \t")
            if rest:
                raise InvalidKeyHeaderError(
                    f"the {HEADER} header has {rest[:20]!r} after its closing quote; send a "
                    "single string (a list or parameters are not accepted)"
                )
            return "".join(out)
        if not " " <= char <= "~":
            raise InvalidKeyHeaderError(
                f"the {HEADER} header has the character {char!r} at position {i}; a key holds "
                "printable ASCII only"
            )
        out.append(char)
        i += 1
    raise InvalidKeyHeaderError(f"the {HEADER} header has no closing double quote")


def _bare(raw: str) -> str:
    for i, char in enumerate(raw):
        if not "!" <= char <= "~" or char in _BARE_REFUSED:
            raise InvalidKeyHeaderError(
                f"the {HEADER} header has the character {char!r} at position {i}; send the key "
                'as a quoted string ("...") or as visible ASCII without spaces, quotes, commas, '
                "semicolons or backslashes"
            )
    return raw


def is_json(content_type: str | None) -> bool:
    """Whether a Content-Type names JSON (``application/json`` or ``…+json``)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def body_digest(body: bytes, content_type: str | None) -> str:
    """SHA-256 (hex) of the body; of its canonical JSON when it is a JSON body.

    Canonical JSON is ``json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` encoded as UTF-8: object key order and whitespace do not
    change it. A body that does not parse as JSON is hashed as its raw bytes.
    """
    data = body
    if body and is_json(content_type):
        try:
            value = json.loads(body)
        except ValueError:
            pass  # not JSON after all: its bytes are its identity
        else:
            data = json.dumps(
                value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
            ).encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def canonical_path(path: bytes, query: str, *, escaped: bool) -> str:
    """The request target as fingerprinted: the path percent-encoded the same way
    whatever the server gave (``escaped``: as received, else already decoded), then
    ``?query`` as received."""
    raw = unquote_to_bytes(path) if escaped else path
    target = quote(raw, safe="/:@!$&'()*+,;=-._~")
    return f"{target}?{query}" if query else target
