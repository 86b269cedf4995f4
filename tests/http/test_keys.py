"""Different Idempotency-Keys never meet: a record's run key and the job keys derived
from another key are in disjoint namespaces, whatever characters the keys hold."""

from __future__ import annotations

import httpx

import acidic
from tests.support import jobs
from tests.support.http import apps
from tests.support.http.helpers import REPLAYED, job_key, post, record_key

RIDE = {"user_id": 7, "origin": "Kreuzberg", "target": "Mitte"}


def test_keys__a_key_holding_a_slash_never_meets_the_job_of_another_key(
    client: httpx.Client, counter: apps.Counter, app: acidic.App
) -> None:
    """Issue 11: ``k/ride`` first made the ride job of ``k`` fail with 500, and ``k``
    first made ``k/ride`` a 422."""
    for first, second in (("a/ride", "a"), ("b", "b/ride")):
        one = post(client, "/rides", first, json_body=RIDE)
        assert one.status_code == 201, one.text
        two = post(client, "/rides", second, json_body=RIDE)
        assert two.status_code == 201, two.text
        assert REPLAYED not in two.headers
        assert one.json()["ride_id"] != two.json()["ride_id"]
        for key, response in ((first, one), (second, two)):
            again = post(client, "/rides", key, json_body=RIDE)
            assert again.headers[REPLAYED] == "true"
            assert again.content == response.content
            assert jobs.get_run(app, job_key(key, "ride")).result == response.json()
            assert jobs.get_run(app, record_key(key)).job == "acidic.http.request"
    assert counter.calls["rides"] == 4
