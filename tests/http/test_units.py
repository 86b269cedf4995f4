"""Pure parts of acidic.http, without a server: the header grammar, the body digest,
the run keys derived from a request, the not-stored rule and configuration errors."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import acidic
import acidic.http
from acidic._encoding import MAX_KEY_LENGTH
from acidic.http._fingerprint import InvalidKeyHeaderError, body_digest, parse_key
from acidic.http._request import RequestInfo, identify
from acidic.http._responses import asks_retry
from tests.support.http.helpers import job_key, record_key


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ('"abc"', "abc"),
        ('  "abc"\t', "abc"),
        ('"a \\"b\\" \\\\ c"', 'a "b" \\ c'),
        ('"; , = ~"', "; , = ~"),
        ("8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ("key:with/odd?chars#%&", "key:with/odd?chars#%&"),
    ],
)
def test_parse_key__accepts_sf_strings_and_bare_tokens(header: str, key: str) -> None:
    assert parse_key([header], 200) == key


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        (['""'], "empty"),
        ([""], "empty"),
        (['"abc'], "closing double quote"),
        (['"a\\b"'], "backslash"),
        (['"a"x'], "after its closing quote"),
        (['"a", "b"'], "after its closing quote"),
        (["a,b"], "','"),
        (["a b"], "' '"),
        (['"caf\xe9"'], "printable ASCII"),
        (['"tab\there"'], "printable ASCII"),
        (['"a"', '"a"'], "sent 2 times"),
        (['"' + "k" * 11 + '"'], "limit is 10"),
    ],
)
def test_parse_key__refuses_with_a_message_naming_the_problem(
    headers: list[str], words: str
) -> None:
    with pytest.raises(InvalidKeyHeaderError, match="Idempotency-Key") as caught:
        parse_key(headers, 10)
    assert words in str(caught.value)
    assert isinstance(caught.value, acidic.AcidicError)


def test_parse_key__no_header_is_no_key() -> None:
    assert parse_key([], 200) is None


def test_body_digest__canonical_for_json_raw_otherwise() -> None:
    a = body_digest(b'{"b": [1, 2], "a": "\\u00e9"}', "application/json; charset=utf-8")
    b = body_digest('{"a":"é","b":[1,2]}'.encode(), "application/vnd.api+json")
    assert a == b
    canonical = json.dumps(
        {"a": "é", "b": [1, 2]}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert a == hashlib.sha256(canonical.encode()).hexdigest()
    # Not JSON by its type, or not parseable: the raw bytes.
    assert (
        body_digest(b'{"b":1, "a":2}', "text/plain")
        == hashlib.sha256(b'{"b":1, "a":2}').hexdigest()
    )
    assert body_digest(b"{nope", "application/json") == hashlib.sha256(b"{nope").hexdigest()
    assert body_digest(b"", None) == hashlib.sha256(b"").hexdigest()


def test_idempotency__bad_configuration_is_refused(tmp_path: object) -> None:
    with acidic.App(f"sqlite:///{tmp_path}/x.db") as app:
        with pytest.raises(acidic.AcidicError, match="max_key_length"):
            acidic.http.Idempotency(app, max_key_length=201)
        with pytest.raises(acidic.AcidicError, match="expires"):
            acidic.http.Idempotency(app, expires=0)
        with pytest.raises(acidic.AcidicError, match="max_response_size"):
            acidic.http.Idempotency(app, max_response_size=-1)
        with pytest.raises(acidic.AcidicError, match="heartbeat"):
            acidic.http.Idempotency(app, heartbeat=90)
        with pytest.raises(acidic.AcidicError, match="methods"):
            acidic.http.Idempotency(app, methods="POST")
        idem = acidic.http.Idempotency(app, max_key_length=1)
        request = idem._identify("k", RequestInfo("POST", "/", {}, {}), "0" * 64)
        assert request.record_key == record_key("k")
        assert request.job_key() == job_key("k")
        with pytest.raises(acidic.AcidicError, match="job_key"):
            request.job_key("x" * 37)
        with pytest.raises(acidic.AcidicError, match="without '/'"):
            request.job_key("a/b")
        idem.close()


keys = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1)
names = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="/"),
    min_size=1,
    max_size=36,
)


@given(keys, names, keys, names, st.sampled_from(["", "alice"]))
def test_run_keys__of_different_keys_or_names_never_meet(
    key: str, name: str, other_key: str, other_name: str, caller: str
) -> None:
    info = RequestInfo("POST", "/", {}, {})
    one, two = (identify(k, info, caller, "0" * 64) for k in (key, other_key))
    records = {one.record_key, two.record_key}
    jobs = {one.job_key(name), two.job_key(other_name)}
    assert not records & jobs  # no record is ever a job
    assert (len(records) == 1) == (key == other_key)
    assert (len(jobs) == 1) == ((key, name) == (other_key, other_name))


def test_run_keys__fit_acidic_s_limit_at_the_longest_key_and_name() -> None:
    request = identify("k" * 200, RequestInfo("POST", "/", {}, {}), "who", "0" * 64)
    assert len(request.job_key("n" * 36)) == MAX_KEY_LENGTH
    assert len(request.record_key) < MAX_KEY_LENGTH


@pytest.mark.parametrize(
    ("status", "headers", "stored"),
    [
        (201, [], True),
        (409, [], True),  # a conflict the view answered: its outcome
        (429, [], False),
        (409, [("Retry-After", "1")], False),
        (423, [("retry-after", "2")], False),
        (400, [("retry-after", "2")], False),
        (503, [("retry-after", "2")], True),  # 5xx: store_status decides (not stored)
        (202, [("retry-after", "5")], True),  # "poll later" is the outcome of a 202
        (301, [("retry-after", "5")], True),
    ],
)
def test_asks_retry__a_429_or_a_4xx_with_retry_after_is_not_stored(
    status: int, headers: list[tuple[str, str]], stored: bool
) -> None:
    reason = asks_retry(status, headers)
    assert (reason is None) == stored
    if reason is not None:
        assert str(status) in reason


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1))
def test_parse_key__every_printable_ascii_key_round_trips_as_an_sf_string(key: str) -> None:
    header = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    assert parse_key([header], 10_000) == key


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.text(), json_values, min_size=1, max_size=6), st.randoms())
def test_body_digest__json_key_order_never_matters(value: dict[str, object], rnd: Any) -> None:
    items = list(value.items())
    rnd.shuffle(items)
    shuffled = json.dumps(dict(items), indent=rnd.choice([None, 2])).encode()
    original = json.dumps(value, ensure_ascii=False).encode()
    assert body_digest(shuffled, "application/json") == body_digest(original, "application/json")


def test_middlewares__refuse_anything_but_an_idempotency() -> None:
    with pytest.raises(acidic.AcidicError, match=r"needs an acidic\.http\.Idempotency"):
        acidic.http.IdempotencyMiddleware(lambda *a: None, None)  # type: ignore[arg-type]
    with pytest.raises(acidic.AcidicError, match=r"needs an acidic\.http\.Idempotency"):
        acidic.http.IdempotencyWSGIMiddleware(lambda *a: [], "idem")  # type: ignore[arg-type]
