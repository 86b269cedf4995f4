"""Markdown tables from a results file: ``python -m bench.report bench/results/X.json``
(what docs/benchmarks.md shows)."""

from __future__ import annotations

import json
import sys
from typing import Any


def throughput(data: dict[str, Any]) -> list[str]:
    section = data.get("throughput")
    if not section:
        return []
    out = [
        f"N = {data['n']} jobs per measurement, {data['rounds']} interleaved rounds.",
        "",
        "| system | jobs/s (median) | spread of rounds | ms/job"
        " | x floor time (per-round median, range) | floor |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in section["rows"]:
        if "error" in row:
            out.append(f"| {row['label']} | failed: {row['error'][:120]} | | | | |")
            continue
        ratio = ""
        if "time_ratio" in row:
            ratio = (
                f"{row['time_ratio']:.2f} ({row['time_ratio_min']:.2f}-{row['time_ratio_max']:.2f})"
            )
        floor = {"raw/3tx/1": "3 tx, serial", "raw/3tx/4": "3 tx, 4 threads"}.get(
            row["floor"] or "", row["floor"] or "(floor)"
        )
        out.append(
            f"| {row['label']} | {row['jobs_per_s']:.0f} | {row['jobs_per_s_min']:.0f}..."
            f"{row['jobs_per_s_max']:.0f} | {row['ms_per_job']:.2f} | {ratio} | {floor} |"
        )
    for system, reason in section.get("skipped", {}).items():
        out.append(f"\n{system}: skipped: {reason}")
    return out


def sql(data: dict[str, Any]) -> list[str]:
    section = data.get("sql")
    if not section:
        return []
    cols = ("statements", "begins", "commits", "rollbacks", "round_trips")
    out = ["| per job | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for row in section["rows"]:
        if "error" in row:
            out.append(f"| {row['label']} | failed: {row['error'][:80]} |" + " |" * (len(cols) - 1))
            continue
        per = row["per_job"]
        out.append(f"| {row['label']} | " + " | ".join(f"{per.get(c, 0):.1f}" for c in cols) + " |")
    return out


def gap(data: dict[str, Any]) -> list[str]:
    found = data.get("gap")
    if not found:
        return []
    out = [
        "| x the floor's time | acidic's SQL by raw psycopg | acidic against its SQL | acidic |",
        "|---|---:|---:|---:|",
    ]
    for g in found:
        out.append(f"| {g['what']} | {g['design']:.2f}x | {g['client']:.2f}x | {g['total']:.2f}x |")
    return out


def growth(data: dict[str, Any]) -> list[str]:
    section = data.get("growth")
    if not section:
        return []
    phases: dict[str, dict[str, Any]] = {}
    for r in section["rows"]:
        phases.setdefault(r.get("phase", f"N={r['n']}"), {})[f"{r['system']}/{r['mode']}"] = r
    out = [
        f"Preloading {section['base']:,} finished runs took {section['preload_seconds']:.0f} s.",
        "",
        "| ms per job | raw 3 tx | acidic inline | acidic worker (4) |",
        "|---|---:|---:|---:|",
    ]
    for phase, got in phases.items():
        cells = []
        for key in ("raw-3tx/serial", "acidic/inline", "acidic/worker"):
            r = got.get(key)
            cells.append("-" if r is None or "error" in r else f"{r['ms_per_job']:.2f}")
        out.append(f"| {phase} | " + " | ".join(cells) + " |")
    return out


def main() -> None:
    with open(sys.argv[1]) as f:
        data = json.load(f)
    m = data["machine"]
    print(
        f"Machine: {m['nproc']} cores, PostgreSQL {m['postgresql']}, Python {m['python']}, "
        f"load average at start {m['loadavg_at_start'][0]:.1f}, at end "
        f"{m.get('loadavg_at_end', ['?'])[0]}; acidic {m.get('acidic', {}).get('commit', '?')[:9]}"
    )
    parts = (("Throughput", throughput), ("Where the time goes", gap), ("SQL", sql))
    for title, part in (*parts, ("Growth", growth)):
        lines = part(data)
        if lines:
            print(f"\n### {title}\n")
            print("\n".join(lines))
    for key in ("latency", "memory", "targets"):
        if key in data:
            print(f"\n### {key}\n\n```\n{json.dumps(data[key], indent=1)[:3000]}\n```")


if __name__ == "__main__":
    main()
