"""Running the ``acidic`` command: for real, the console script from the virtualenv's
``bin`` (:func:`run_cli`), or in this process with click's ``CliRunner``
(:func:`invoke_cli`), which saves the ~1 s a new process spends importing acidic,
SQLAlchemy and the drivers.

Both return a ``CompletedProcess`` (``returncode``, ``stdout``, ``stderr``). A test of
what a command prints or exits with uses :func:`invoke_cli`; a test of the process
itself (the console script is installed, signals, ``acidic worker``, the demo's child
that is SIGKILLed) uses :func:`run_cli`. The commands that configure logging, install
signal handlers, serve or start processes (:data:`REAL_PROCESS_ONLY`) are refused by
:func:`invoke_cli`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path

from click.testing import CliRunner

import acidic
from acidic._cli import main

ACIDIC = Path(sys.executable).with_name("acidic")

#: Commands that leave global state behind in the process that runs them (logging
#: configured, signal handlers, a server, child processes): real processes only.
REAL_PROCESS_ONLY = frozenset({"worker", "relay", "dashboard", "demo"})


def run_cli(
    *args: str, cwd: Path | None = None, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``acidic ARGS`` with ``$ACIDIC_DATABASE_URL`` set to ``url`` (or unset)."""
    env = {k: v for k, v in os.environ.items() if k != "ACIDIC_DATABASE_URL"}
    if url is not None:
        env["ACIDIC_DATABASE_URL"] = url
    return subprocess.run(
        [str(ACIDIC), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def invoke_cli(
    *args: str,
    cwd: Path | None = None,
    url: str | None = None,
    env: Mapping[str, str | None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``acidic ARGS`` in this process, as :func:`run_cli` runs it in a new one:
    ``$ACIDIC_DATABASE_URL`` set to ``url`` (or unset), the variables of ``env`` set
    (None: unset) and ``cwd`` the current directory for the call; stdin is not a
    terminal. An exception the command lets escape is printed to stderr as a
    traceback with exit code 1, as Python would.

    The module of ``--app module:attr`` is imported afresh for the call (a new process
    would import it, with the call's environment) and the Apps it made are closed
    afterwards; the module imported before the call, if any, is put back."""
    command = next((a for a in args if not a.startswith("-")), None)
    if command in REAL_PROCESS_ONLY:
        raise ValueError(f"acidic {command} must run in a real process: use run_cli")
    runner = CliRunner()
    with _fresh_app_module(args), _isolated(cwd):
        result = runner.invoke(
            main,
            list(args),
            env={"ACIDIC_DATABASE_URL": url, **(env or {})},
            prog_name="acidic",
            catch_exceptions=True,
        )
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        exc = result.exception
        stderr += "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return subprocess.CompletedProcess(
        ["acidic", *args], result.exit_code, stdout=result.stdout, stderr=stderr
    )


@contextlib.contextmanager
def _isolated(cwd: Path | None) -> Iterator[None]:
    """``cwd`` as the current directory; ``sys.path`` as it was afterwards (importing
    ``--app`` makes the current directory importable)."""
    path = list(sys.path)
    try:
        with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
            yield
    finally:
        sys.path[:] = path


@contextlib.contextmanager
def _fresh_app_module(args: tuple[str, ...]) -> Iterator[None]:
    """The module named by ``--app module:attr`` out of ``sys.modules`` for the call;
    the App the call's import of it made is closed, the previous module put back."""
    target = None
    for i, arg in enumerate(args):
        if arg == "--app" and i + 1 < len(args):
            target = args[i + 1]
        elif arg.startswith("--app="):
            target = arg.removeprefix("--app=")
    name, _, attribute = (target or "").partition(":")
    if not name:
        yield
        return
    parent_name, _, child = name.rpartition(".")
    before = sys.modules.pop(name, None)
    try:
        yield
    finally:
        imported = sys.modules.pop(name, None)
        if imported is not None and imported is not before:
            # The App the module made (not one it imported from a module kept).
            head = attribute.partition(".")[0]
            made = vars(imported).get(head)
            kept = vars(before).get(head) if before is not None else None
            if isinstance(made, acidic.App) and made is not kept:
                made.close()
        if before is not None:
            sys.modules[name] = before
        parent = sys.modules.get(parent_name) if parent_name else None
        if parent is not None:
            if before is not None:
                setattr(parent, child, before)
            elif imported is not None and getattr(parent, child, None) is imported:
                delattr(parent, child)
