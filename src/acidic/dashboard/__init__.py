"""acidic's web dashboard: see, retry, resume and cancel runs in a browser.

``acidic dashboard`` serves it; :func:`create_app` returns it as an ASGI application
to mount in an existing Starlette or FastAPI application::

    from acidic.dashboard import create_app

    api.mount("/acidic", create_app(app, auth=lambda request: request.user.is_staff))

It needs the ``dashboard`` extra (``pip install 'acidic[dashboard]'``: Starlette,
Jinja2 and, for ``acidic dashboard``, uvicorn).
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401 - checked here to name the extra
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        f"acidic.dashboard needs the dashboard extra: pip install 'acidic[dashboard]' ({exc})"
    ) from exc

from ._server import AuthCallback, create_app

__all__ = ["AuthCallback", "create_app"]
