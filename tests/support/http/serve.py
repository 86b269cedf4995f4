"""Serve the test API in a process of its own, so that tests can kill it mid-request.

``python -m tests.support.http.serve asgi|wsgi DATABASE_URL`` prints ``port N`` once it
listens. The App's ``lock_timeout`` is 1 s, so the records and runs of a killed
server can be taken over a second after it died. ``$ACIDIC_TEST_CRASH`` makes a step
of the ride job SIGKILL the process (see tests/support/jobs.py).
"""

from __future__ import annotations

import socket
import sys

import uvicorn
from werkzeug.serving import make_server

from tests.support import jobs
from tests.support.http import apps


def main(kind: str, url: str) -> None:
    app = jobs.make_app(url, lock_timeout=1.0)
    idem = apps.make_idempotency(app)
    counter = apps.Counter()
    if kind == "asgi":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)  # connections queue from now on, before uvicorn accepts them
        print(f"port {sock.getsockname()[1]}", flush=True)
        config = uvicorn.Config(
            apps.make_asgi(app, idem, counter), lifespan="off", log_level="warning", ws="none"
        )
        uvicorn.Server(config).run(sockets=[sock])
    else:
        server = make_server("127.0.0.1", 0, apps.make_wsgi(app, idem, counter), threaded=True)
        print(f"port {server.server_port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
