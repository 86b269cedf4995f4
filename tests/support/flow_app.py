"""The App of the schedule tests' worker processes: the worker tests' jobs plus one
schedule, ``ticks``, that runs ``Stamp`` every ``$ACIDIC_TEST_EVERY`` seconds (default 1)
with ``catch_up=$ACIDIC_TEST_CATCH_UP`` (default 1). Started as
``acidic worker --app tests.support.flow_app:app`` with ``$ACIDIC_TEST_URL`` set."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

import acidic
from tests.support import worker_app

EVERY_ENV = "ACIDIC_TEST_EVERY"
CATCH_UP_ENV = "ACIDIC_TEST_CATCH_UP"


def make_app(url: str, every: float = 1.0, catch_up: int = 1) -> acidic.App:
    """The worker tests' App on ``url`` with the schedule ``ticks``."""
    application = worker_app.make_app(url)
    application.schedule(
        "ticks",
        worker_app.Stamp(n=0),
        every=dt.timedelta(seconds=every),
        catch_up=catch_up,
    )
    return application


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(name)
    url = os.environ[worker_app.URL_ENV]
    application = make_app(
        url,
        float(os.environ.get(EVERY_ENV, "1")),
        int(os.environ.get(CATCH_UP_ENV, "1")),
    )
    globals()["app"] = application
    return application
