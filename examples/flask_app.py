"""An idempotent ride API with Flask and acidic.http, served by Werkzeug.

Run it (runs are kept in $ACIDIC_DATABASE_URL, else in the SQLite file
acidic-example.sqlite3 of the system's temporary directory, kept between runs; delete it
to start afresh)::

    python examples/flask_app.py [--port 8000] [--database-url URL] [--crash-after-charge]

Then::

    curl -i localhost:8000/rides -H 'Idempotency-Key: "ride-1"' -H 'Authorization: Bearer alice' \\
         -H 'Content-Type: application/json' -d '{"user_id": 1, "origin": "a", "target": "b"}'

Send it again: the same response, with ``Idempotent-Replayed: true``; another body
under the same key: 422; no key: 400. With ``--crash-after-charge`` the server dies
after charging the card: start it again (without the flag) and retry the request: the
ride resumes at the receipt and the response comes back.
"""

from __future__ import annotations

import argparse
import os
import sys

import flask
from rides import (
    CRASH_AFTER_CHARGE,
    EXAMPLE_DATABASE_URL,
    CreateRide,
    caller,
    database_url,
    make_app,
    shown,
)
from werkzeug.serving import make_server

import acidic.http
import acidic.http.flask


def build(database_url: str | None = None) -> flask.Flask:
    """The Flask application, its WSGI app wrapped in the idempotency middleware."""
    app = make_app(database_url)
    idem = acidic.http.Idempotency(app, caller=caller)
    web = flask.Flask("rides")

    @web.post("/rides")
    @acidic.http.flask.key_required
    def create_ride() -> tuple[flask.Response, int]:
        request = acidic.http.idempotent_request(flask.request)
        assert request is not None  # key_required
        data = flask.request.get_json()
        ride = CreateRide(user_id=data["user_id"], origin=data["origin"], target=data["target"])
        # The job's key derives from the request's: a retry resumes the same ride.
        return flask.jsonify(app.run(ride, key=request.job_key("ride"))), 201

    acidic.http.flask.install(web, idem)
    return web


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--database-url",
        help=f"where runs are kept [default: $ACIDIC_DATABASE_URL, else {EXAMPLE_DATABASE_URL}]",
    )
    parser.add_argument("--crash-after-charge", action="store_true")
    args = parser.parse_args()
    if args.crash_after_charge:
        os.environ[CRASH_AFTER_CHARGE] = "1"
    url = database_url(args.database_url)
    print(f"runs are kept in {shown(url)}", file=sys.stderr, flush=True)
    server = make_server("127.0.0.1", args.port, build(url), threaded=True)
    print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
