"""``acidic runs retry|resume|cancel``: one run by its key, or every run a filter selects.

Each run goes to the App's own ``retry``, ``resume`` or ``cancel`` (through
:func:`acidic._admin.perform`), so a bulk action makes the same checks as a call in
code. The App refuses a run whose status does not allow the action with
:class:`acidic.RunStateError`, however late that status changed; the statuses of
:data:`acidic._engine._actions.ACTIONS` only pre-select the runs of a bulk action.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress

from .._admin import Admin, BulkAction, RunFilter, perform
from .._app import App
from .._engine._actions import accepted
from .._errors import (
    InvalidKeyError,
    RunStateError,
    UnknownKeyError,
    UnknownRecoveryPointError,
)
from .._run import RunStatus
from ._options import app_option, emit_json, filter_options, json_option, make_filter, opened
from ._root import (
    EXIT_REFUSED,
    CLINotFoundError,
    CLIRefusedError,
    CLIUsageError,
    database_url_option,
)

__all__ = ["VERBS", "Verb", "action_command", "refusal"]


@dataclass(frozen=True, slots=True)
class Verb:
    """How the CLI names an action: the command (and the App's method), its past tense."""

    name: str
    done: str


VERBS = (Verb("retry", "retried"), Verb("resume", "resumed"), Verb("cancel", "cancelled"))


def refusal(exc: RunStateError) -> str:
    """The CLI's line for a refused action: the key, its status, what the action takes."""
    return (
        f"cannot {exc.action} key {exc.key!r}: it is {exc.status}; "
        f"{exc.action} applies to {', '.join(exc.accepted)} runs"
    )


def action_command(verb: Verb) -> click.Command:
    """The click command of ``verb``."""
    statuses = ", ".join(accepted(verb.name))
    extra = (
        "\n\nWith --from-step NAME (one KEY only), the run continues at that step of its job, "
        "and a failed run can be resumed too."
        if verb.name == "resume"
        else ""
    )

    @click.command(
        name=verb.name,
        help=f"{verb.name.capitalize()} the run KEY, or every run the filters select "
        f"(only {statuses} runs), asking first unless --yes.{extra}",
    )
    @click.argument("key", required=False)
    @database_url_option()
    @app_option()
    @filter_options
    @click.option("--all", "all_runs", is_flag=True, help="select every run (no filter)")
    @click.option("--yes", "-y", is_flag=True, help="do not ask before acting on several runs")
    @json_option
    def command(
        key: str | None,
        database_url: str | None,
        app_path: str | None,
        statuses: tuple[str, ...],
        jobs: tuple[str, ...],
        queues: tuple[str, ...],
        key_prefix: str | None,
        since: str | None,
        all_runs: bool,
        yes: bool,
        as_json: bool,
        from_step: str | None = None,
    ) -> None:
        flt = make_filter(statuses, jobs, queues, key_prefix, since)
        if key is not None:
            if not flt.empty or all_runs:
                raise click.UsageError("give a KEY or filters (or --all), not both")
            with opened(database_url, app_path) as app:
                _act_on_one(app, verb, key, from_step, as_json)
            return
        if from_step is not None:
            raise click.UsageError("--from-step needs one KEY: steps differ between jobs")
        if flt.empty and not all_runs:
            raise click.UsageError(
                f"give a KEY, filters (--status, --job, --queue, --key-prefix, --since) "
                f"or --all to {verb.name} every {statuses} run"
            )
        with opened(database_url, app_path) as app:
            _act_in_bulk(app, verb, flt, yes=yes, as_json=as_json)

    if verb.name == "resume":
        command = click.option(
            "--from-step",
            metavar="NAME",
            default=None,
            help="continue at this step of the job (moves the recovery point)",
        )(command)
    return command


def _act_on_one(app: App, verb: Verb, key: str, from_step: str | None, as_json: bool) -> None:
    try:
        run = perform(app, verb.name, key, from_step=from_step)
    except RunStateError as exc:
        raise CLIRefusedError(refusal(exc)) from exc
    except (UnknownRecoveryPointError, InvalidKeyError) as exc:
        raise CLIUsageError(str(exc)) from exc
    except UnknownKeyError as exc:
        raise CLINotFoundError(str(exc)) from exc
    if as_json:
        after = Admin(app).summary(key)
        emit_json({"action": verb.name, "key": key, "run": after and after.to_json()})
        return
    if verb.name == "cancel" and run.status == RunStatus.RUNNING:
        click.echo(
            f"cancel requested for key {key!r}: it is running and stops at its next step "
            "boundary (that step is not committed)"
        )
        return
    where = f" from step {from_step}" if from_step else ""
    click.echo(f"{verb.done} key {key!r}{where}: now {run.status}")


def _act_in_bulk(app: App, verb: Verb, flt: RunFilter, *, yes: bool, as_json: bool) -> None:
    """The dashboard's bulk action (:class:`acidic._admin.BulkAction`): counted first,
    confirmed for that count, then done in bounded batches (keys read ``BATCH`` at a
    time, each run in its own transaction), never past the last id counted."""
    applies = accepted(verb.name)
    if flt.narrowed(applies) is None:
        raise click.UsageError(
            f"{verb.name} applies to {', '.join(applies)} runs only; "
            f"--status asked for {', '.join(flt.statuses)}"
        )
    bulk = BulkAction(app, verb.name, flt)
    plan = bulk.plan()
    what = plan.describe()
    if not plan.count:
        if as_json:
            emit_json({"action": verb.name, "matched": 0, "done": [], "left": [], "changed": 0})
        else:
            click.echo(f"no runs to {verb.name} ({what})")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise CLIUsageError(
                f"{plan.count} run(s) match ({what}); pass --yes to "
                f"{verb.name} them without a prompt"
            )
        click.confirm(f"{verb.name.capitalize()} {plan.count} run(s) ({what})?", abort=True)
    done: list[str] = []
    left: list[dict[str, Any]] = []
    err = Console(stderr=True)
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task(verb.name, total=plan.count)

        def reached(key: str, refused: RunStateError | UnknownKeyError | None) -> None:
            # Any other error (a database problem) stops the command, and says so.
            if isinstance(refused, RunStateError):
                left.append({"key": key, "reason": refusal(refused), "status": refused.status})
            elif refused is not None:  # pruned since it was counted
                left.append({"key": key, "reason": str(refused), "status": None})
            else:
                done.append(key)
            progress.advance(task)

        after, finished = 0, False
        while not finished:
            step = bulk.step(after=after, upto=plan.upto, budget=60.0, on_run=reached)
            after, finished = step.after, step.finished
    # Counted but no longer selected when their batch was read (their status changed).
    changed = max(plan.count - len(done) - len(left), 0)
    if as_json:
        emit_json(
            {
                "action": verb.name,
                "matched": plan.count,
                "done": done,
                "left": left,
                "changed": changed,
            }
        )
    else:
        click.echo(f"{verb.done} {len(done)} of {plan.count} run(s) ({what})")
        for item in left:
            click.echo(f"left as it was: {item['key']!r}: {item['reason']}", err=True)
        if changed:
            click.echo(
                f"left as they were: {changed} run(s) no longer selected when reached "
                "(their status changed after they were counted)",
                err=True,
            )
    if left or changed:
        sys.exit(EXIT_REFUSED)
