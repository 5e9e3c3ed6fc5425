"""Load generation on loopback with wrk: POST one JSON body, report req/s and latency percentiles."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Mapping
from urllib.parse import urlsplit

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_post.lua"
MAX_DURATION_S = 600.0
MAX_CONNECTIONS = 1000
_MARKER = "WRK_JSON "


@dataclass(frozen=True)
class WrkResult:
    """One wrk run. Latencies in milliseconds; ``errors`` counts wrk's error kinds
    (``status`` = non-2xx/3xx responses)."""

    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: Dict[str, int]

    @property
    def ok(self) -> bool:
        """True when wrk saw no error of any kind (including non-2xx responses)."""
        return self.requests > 0 and not any(self.errors.values())


def wrk_path() -> str:
    """The wrk executable; raises with the install hint if it is missing."""
    path = shutil.which("wrk")
    if not path:
        raise RuntimeError("wrk not found: apt-get update && apt-get install -y wrk")
    return path


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host != "127.0.0.1":
        raise ValueError("load is generated against 127.0.0.1 only, not {!r}".format(host))


def parse_wrk_output(stdout: str) -> WrkResult:
    """Build a WrkResult from the ``WRK_JSON`` line that wrk_post.lua's done() prints."""
    line = next((l for l in stdout.splitlines() if l.startswith(_MARKER)), None)
    if line is None:
        raise RuntimeError("wrk printed no summary:\n" + stdout)
    data = json.loads(line[len(_MARKER):])
    duration_s = data["duration_us"] / 1e6
    lat = data["latency_us"]
    return WrkResult(
        requests=data["requests"],
        duration_s=duration_s,
        rps=data["requests"] / duration_s if duration_s else 0.0,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        errors=data["errors"],
    )


def run_wrk(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    duration_s: float = 3.0,
    connections: int = 10,
    threads: int = 2,
    timeout_s: float = 2.0,
) -> WrkResult:
    """POST ``body`` with ``headers`` to the loopback ``url`` for ``duration_s`` seconds.

    Bounded: duration <= MAX_DURATION_S, connections <= MAX_CONNECTIONS, and the wrk
    process is killed if it overruns its duration by 30 s.
    """
    _check_loopback(url)
    if not 0 < duration_s <= MAX_DURATION_S:
        raise ValueError("duration_s must be in (0, {}]".format(MAX_DURATION_S))
    if not 0 < connections <= MAX_CONNECTIONS or not 0 < threads <= connections:
        raise ValueError("need 0 < threads <= connections <= {}".format(MAX_CONNECTIONS))
    argv = [
        wrk_path(),
        "--threads", str(threads),
        "--connections", str(connections),
        "--duration", "{}s".format(max(1, round(duration_s))),
        "--timeout", "{}s".format(max(1, round(timeout_s))),
        "--script", str(WRK_SCRIPT),
    ]
    for name, value in headers.items():
        argv += ["--header", "{}: {}".format(name, value)]
    argv.append(url)
    env = dict(os.environ, WRK_BODY=body.decode())
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=duration_s + 30, check=False
    )
    if done.returncode != 0:
        raise RuntimeError("wrk failed ({}): {}".format(done.returncode, done.stderr or done.stdout))
    return parse_wrk_output(done.stdout)
