"""Running the ``acidic`` console script for real, from the virtualenv's ``bin``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ACIDIC = Path(sys.executable).with_name("acidic")


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
