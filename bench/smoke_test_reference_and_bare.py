"""Smoke benchmark: wrk against the bare Falcon baseline and the jet-bridge reference.

    .venv/bin/python -m bench.smoke_test_reference_and_bare [--duration 3] [--repeat 1]

Prints a markdown table: setup | message | req/s | p50 | p99.
"""
from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

from bench.load import WrkResult, run_wrk
from bench.payloads import MESSAGE_NAMES, request_body, request_headers
from bench.reference import start_reference
from bench.servers import ServerProcess, free_port, start_gunicorn


@dataclass(frozen=True)
class Setup:
    """A named way to start a server over a SQLite database file."""

    label: str
    start: Callable[[Path], ServerProcess]


SETUPS: Tuple[Setup, ...] = (
    Setup("bare falcon, gunicorn sync 2 workers",
          lambda db: start_gunicorn("bench.bare_app:app", workers=2, worker_class="sync")),
    Setup("bare falcon, gunicorn gthread 2w x 4t",
          lambda db: start_gunicorn("bench.bare_app:app", workers=2, worker_class="gthread", threads=4)),
    Setup("jet-bridge 1.12.13, tornado 2 workers",
          lambda db: start_reference(db, free_port(), workers=2)),
)


def make_sqlite_db(path: Path, rows: int = 100) -> Path:
    """A small SQLite database with one ``users`` table."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        conn.executemany("INSERT INTO users (name) VALUES (?)", [("user%d" % i,) for i in range(rows)])
    return path


def check_ok(server: ServerProcess, message: str) -> None:
    """One request through urllib; raises unless it gets 200 with a non-empty body."""
    req = urllib.request.Request(
        server.url(), data=request_body(message), headers=request_headers(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        if resp.status != 200 or not resp.read():
            raise RuntimeError("{}: {} got {} / empty body".format(server.name, message, resp.status))


def measure(
    server: ServerProcess, message: str, *, duration_s: float, connections: int, threads: int, repeat: int
) -> WrkResult:
    """Run wrk ``repeat`` times; return the run with the median req/s."""
    check_ok(server, message)
    runs = [
        run_wrk(server.url(), request_body(message), request_headers(),
                duration_s=duration_s, connections=connections, threads=threads)
        for _ in range(repeat)
    ]
    bad = [r for r in runs if not r.ok]
    if bad:
        raise RuntimeError("{}: {} had wrk errors {}".format(server.name, message, bad[0].errors))
    median = statistics.median_low([r.rps for r in runs])
    return next(r for r in runs if r.rps == median)


def format_table(rows: Sequence[Tuple[str, str, WrkResult]]) -> str:
    """Markdown table of (setup, message, result) rows."""
    lines = ["| setup | message | req/s | p50 | p99 |", "|---|---|---|---|---|"]
    lines += [
        "| {} | {} | {:.0f} | {:.2f} ms | {:.2f} ms |".format(label, msg, r.rps, r.p50_ms, r.p99_ms)
        for label, msg, r in rows
    ]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--repeat", type=int, default=1, help="wrk runs per cell (median reported)")
    args = parser.parse_args(argv)
    rows: List[Tuple[str, str, WrkResult]] = []
    with tempfile.TemporaryDirectory(prefix="bench-smoke-") as tmp:
        db = make_sqlite_db(Path(tmp) / "bench.sqlite3")
        for setup in SETUPS:
            with setup.start(db) as server:
                for message in MESSAGE_NAMES:
                    result = measure(server, message, duration_s=args.duration,
                                     connections=args.connections, threads=args.threads,
                                     repeat=max(1, args.repeat))
                    rows.append((setup.label, message, result))
                    print("{} / {}: {:.0f} req/s".format(setup.label, message, result.rps), flush=True)
    print()
    print("wrk -c{} -t{}, {:g}s per run, median of {}".format(
        args.connections, args.threads, args.duration, max(1, args.repeat)))
    print(format_table(rows))


if __name__ == "__main__":
    main()
