"""Run the reference implementation (jet-bridge 1.12.13 on Tornado) on loopback.

jet-bridge needs Python 3.9, so it lives in a throwaway virtualenv under
``bench/.cache/`` (built from PyPI on first use, reused afterwards).

Auth is made local: ``BEARER_AUTH_KEY`` makes the bridge accept
``Authorization: Bearer <key>`` (compared with ``==``, no network). Its startup
token check (``check_token_command``) would call Jet's cloud: ``API_BASE_URL``
points at a closed loopback port, so it fails at once and only logs a warning.

    from bench.reference import start_reference, reference_request
    with start_reference("/tmp/bench.sqlite3", port=8890, workers=2) as ref:
        url, headers, body = reference_request(ref.port, "get_action_list")
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from bench.payloads import BENCH_TOKEN, MESSAGES_PATH, request_body, request_headers
from bench.servers import HOST, ServerProcess, free_port, start_server

REFERENCE_REQUIREMENT = "jet-bridge==1.12.13"
BENCH_DIR = Path(__file__).resolve().parent
CACHE_DIR = BENCH_DIR / ".cache"
LAUNCHER = BENCH_DIR / "reference" / "run_bridge.py"
_READY_MARKER = ".bench-ready"
_VENV_NAME = "jet-bridge-1.12.13-py3.9"


def _is_python39(executable: str) -> bool:
    try:
        out = subprocess.run(
            [executable, "-c", "import sys; print(sys.version_info[:2] == (3, 9))"],
            capture_output=True, text=True, timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.stdout.strip() == "True"


def _version_key(python: str) -> Tuple[int, ...]:
    """(3, 9, 18) for ".../versions/3.9.18/bin/python3.9"; non-numeric parts sort first."""
    return tuple(int(p) if p.isdigit() else -1 for p in Path(python).parents[1].name.split("."))


def _python39_candidates() -> List[str]:
    candidates: List[str] = []
    if os.environ.get("BENCH_PYTHON39"):
        candidates.append(os.environ["BENCH_PYTHON39"])
    roots = []
    pyenv = shutil.which("pyenv")
    if pyenv:
        try:
            root = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=20)
            roots.append(root.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    roots += [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    for root in filter(None, roots):
        found = glob.glob(os.path.join(root, "versions", "3.9*", "bin", "python3.9"))
        candidates += sorted(found, key=_version_key, reverse=True)
    which = shutil.which("python3.9")
    if which:
        candidates.append(which)
    return list(dict.fromkeys(candidates))


def find_python39() -> str:
    """Path of a Python 3.9 interpreter ($BENCH_PYTHON39, pyenv's, or python3.9 on PATH)."""
    for candidate in _python39_candidates():
        if _is_python39(candidate):
            return candidate
    raise RuntimeError(
        "No Python 3.9 found for the jet-bridge reference: set BENCH_PYTHON39=/path/to/python3.9, "
        "or install one (e.g. `pyenv install 3.9`)."
    )


def reference_venv_ready(cache_dir: Path = CACHE_DIR) -> bool:
    """True when the reference's venv is built (so starting it installs nothing)."""
    venv = cache_dir / _VENV_NAME
    marker = venv / _READY_MARKER
    return marker.is_file() and marker.read_text() == REFERENCE_REQUIREMENT and (venv / "bin" / "python").exists()


def ensure_reference_venv(cache_dir: Path = CACHE_DIR) -> Path:
    """Python of a venv with jet-bridge installed; builds it (pip from PyPI) if missing."""
    venv = cache_dir / _VENV_NAME
    python = venv / "bin" / "python"
    marker = venv / _READY_MARKER
    if reference_venv_ready(cache_dir):
        return python
    shutil.rmtree(venv, ignore_errors=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    log = cache_dir / "reference-install.log"
    with open(log, "wb") as out:
        for argv in (
            [find_python39(), "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", REFERENCE_REQUIREMENT],
        ):
            result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=900)
            if result.returncode != 0:
                raise RuntimeError("`{}` failed, see {}".format(" ".join(argv), log))
    marker.write_text(REFERENCE_REQUIREMENT)
    return python


def reference_env(
    db_path: Path, port: int, run_dir: Path, workers: int, threads: Optional[int], token: str
) -> Dict[str, str]:
    """The whole environment of the bridge process.

    It is built from scratch on purpose: jet-bridge turns *every* env var whose name
    matches a setting (PORT, DEBUG, TOKEN, CONFIG, ...) into configuration.
    """
    dead_api = "http://{}:{}/api".format(HOST, free_port())  # nothing listens: refused at once
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(run_dir)),
        "LANG": "C.UTF-8",
        "ADDRESS": HOST,
        "PORT": str(port),
        "WORKERS": str(workers),
        "DEBUG": "false",
        "PROJECT": "bench",
        "TOKEN": "00000000-0000-0000-0000-000000000000",
        "BEARER_AUTH_KEY": token,
        "DATABASE_ENGINE": "sqlite",
        "DATABASE_NAME": str(db_path.resolve()),
        "API_BASE_URL": dead_api,
        "WEB_BASE_URL": dead_api,
        "AUTO_OPEN_REGISTER": "false",
        "CONFIG": str(run_dir / "absent-jet.conf"),
        "STORE_PATH": str(run_dir / "jet_bridge_store.sqlite3"),
        "MEDIA_ROOT": str(run_dir / "media"),
    }
    if threads is not None:
        env["THREADS"] = str(threads)
    return env


def start_reference(
    db_path: str | Path,
    port: int,
    workers: int = 2,
    *,
    threads: Optional[int] = None,
    token: str = BENCH_TOKEN,
    cache_dir: Path = CACHE_DIR,
    startup_timeout: float = 60.0,
) -> ServerProcess:
    """Start jet-bridge on 127.0.0.1:``port`` with ``workers`` processes over the SQLite ``db_path``.

    ``threads`` is the bridge's per-process thread pool (its default: the CPU count).
    Returns a handle with ``.stop()`` (also a context manager).
    """
    db_path = Path(db_path)
    if not db_path.is_file():
        raise FileNotFoundError("SQLite database not found: {}".format(db_path))
    python = ensure_reference_venv(cache_dir)
    run_dir = cache_dir / "runs" / "port-{}".format(port)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    return start_server(
        [str(python), str(LAUNCHER)],
        port,
        run_dir / "bridge.log",
        name="jet-bridge reference",
        env=reference_env(db_path, port, run_dir, workers, threads, token),
        cwd=run_dir,
        startup_timeout=startup_timeout,
        # each forked Tornado process logs this line once it listens
        all_workers_ready=lambda server: server.log_text().count("Starting server at") >= workers,
    )


def reference_request(
    port: int, message: str, token: str = BENCH_TOKEN
) -> Tuple[str, Dict[str, str], bytes]:
    """(URL, headers, JSON body) of a request for ``message`` that the reference answers with 200."""
    return "http://{}:{}{}".format(HOST, port, MESSAGES_PATH), request_headers(token), request_body(message)


def _main() -> None:
    parser = argparse.ArgumentParser(description="Run the jet-bridge reference until Ctrl-C.")
    parser.add_argument("db_path", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    with start_reference(args.db_path, args.port or free_port(), args.workers, threads=args.threads) as ref:
        print("reference at {} (log: {})".format(ref.url(), ref.log_path), flush=True)
        try:
            ref.proc.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    sys.exit(_main())
