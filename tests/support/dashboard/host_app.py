"""A host application that mounts the dashboard under ``/ops``, as users do with
their own Starlette or FastAPI application. Served by ``uvicorn
tests.support.dashboard.host_app:host`` in a child process, on ``$ACIDIC_DATABASE_URL``.

Its auth callback lets in requests carrying ``X-User: admin``: the host's own idea
of who may see the dashboard.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount

from acidic.dashboard import create_app
from tests.support.dashboard.ops_app import app


def allowed(request: Request) -> bool:
    return request.headers.get("x-user") == "admin"


host = Starlette(routes=[Mount("/ops", app=create_app(app, auth=allowed, refresh=0))])
