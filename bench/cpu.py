"""Wall and CPU time per ride job of one acidic tree: ``python -m bench.cpu SRC MODE [N]``.

``SRC`` is a tree's ``src/`` directory (the acidic to measure), ``MODE`` one of
``pg-inline``, ``pg-worker`` (4 executors), ``sqlite-inline``, ``sqlite-worker`` (1
executor). Run it alternately for two trees to compare them (an A/B), e.g.::

    for i in 1 2 3 4 5; do for src in src /tmp/other/src; do
        .venv/bin/python -m bench.cpu $src sqlite-inline 1500; done; done
"""

from __future__ import annotations

import os
import sys
import time


def main() -> None:
    src, mode = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 1500
    sys.path.insert(0, os.path.abspath(src))  # before the installed acidic
    from .systems import acidic_pg  # noqa: PLC0415 - after sys.path names the tree

    database, how = mode.split("-")
    if database == "sqlite":
        acidic_pg.reset_sqlite()
        app, job = acidic_pg.make_app(f"sqlite:///{acidic_pg.sqlite_path()}")
    else:
        acidic_pg.reset_pg()
        app, job = acidic_pg.pg_app()
    acidic_pg.run_inline(app, job, 100, first=100_000)  # warm: connections, caches
    before, start = os.times(), time.perf_counter()
    if how == "inline":
        acidic_pg.run_inline(app, job, n)
    else:
        acidic_pg.run_worker(app, job, n, 1 if database == "sqlite" else 4)
    wall, after = time.perf_counter() - start, os.times()
    app.close()
    print(
        f"{mode} {src}: per job wall {1000 * wall / n:.2f} ms, user"
        f" {1000 * (after.user - before.user) / n:.3f} ms, system"
        f" {1000 * (after.system - before.system) / n:.3f} ms ({__import__('acidic').__file__})"
    )


if __name__ == "__main__":
    main()
