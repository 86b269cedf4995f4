"""A browser-like HTTP client for the dashboard tests (cookies kept, redirects not
followed), and the host application served by uvicorn in a child process."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tests.support.dashboard.helpers import ROOT, free_port, wait_for


@dataclass
class Reply:
    status: int
    body: str
    location: str | None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class Client:
    """A browser-like client: keeps cookies, does not follow redirects."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.headers = headers or {}
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect()
        )

    def send(
        self, path: str, form: dict[str, str] | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        data = None if form is None else urllib.parse.urlencode(form).encode()
        request = urllib.request.Request(
            self.base + path, data=data, headers={**self.headers, **(headers or {})}
        )
        try:
            with self.opener.open(request, timeout=60) as response:
                return Reply(response.status, response.read().decode(), None)
        except urllib.error.HTTPError as exc:
            return Reply(exc.code, exc.read().decode(), exc.headers.get("location"))

    def json(self, path: str, form: dict[str, str], headers: dict[str, str]) -> Any:
        """POST ``form``; the JSON answer (which must be a 200)."""
        reply = self.send(path, form, headers)
        assert reply.status == 200, (reply.status, reply.body)
        return json.loads(reply.body)

    def csrf(self, path: str) -> str:
        """The CSRF token of the forms on ``path`` (getting it sets the cookie)."""
        page = self.send(path)
        found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.body)
        assert found is not None, (page.status, page.body[:500])
        return found[1]


def keys_in(body: str) -> list[str]:
    """The run keys listed on a page (its ``data-key`` rows)."""
    return re.findall(r'data-key="([^"]+)"', body)


@contextlib.contextmanager
def serve_host(database_url: str) -> Iterator[str]:
    """``tests.support.dashboard.host_app`` served by uvicorn in a child process; yields
    the dashboard's base URL (mounted at ``/ops``)."""
    port = free_port()
    env = {**os.environ, "ACIDIC_DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "tests.support.dashboard.host_app:host",
            "--port",
            str(port),
            "--log-level",
            "error",
        ],
        cwd=ROOT,
        env=env,
    )

    def up() -> bool | None:
        assert proc.poll() is None, f"uvicorn exited {proc.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return None

    try:
        wait_for("uvicorn to listen", up)
        yield f"http://127.0.0.1:{port}/ops"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
