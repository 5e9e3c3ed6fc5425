"""The benchmarks (``python -m bench``) run end to end with tiny sizes, so they do not rot.

Their numbers mean nothing at these sizes and are not checked; what is checked
is that every benchmark runs against the real servers and databases and fills
its table with measurements. The benchmarks themselves are run by hand, not here.
"""

from __future__ import annotations

import importlib
import math
import shutil
import socket
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from types import ModuleType

import pytest
from falcon import testing

from bench import __main__ as bench_main
from bench import cpu_by_thread, servers
from bench.bare_app import RESPONSES
from bench.jet_app import create_app, prepare_database
from bench.payloads import MESSAGE_NAMES, request_body, request_headers
from bench.reference import (
    REFERENCE_REQUIREMENT,
    ensure_reference_venv,
    reference_venv_ready,
)
from bench.report import Section
from jet_sqla import encoding

from .conftest import IN_CI, MARIADB_URL, POSTGRES_URL, require_server

TINY_HTTP = ['--duration', '1', '--rounds', '1', '--stack-rounds', '1', '--starvation-rounds', '1',
             '--connections', '2', '--wrk-threads', '1',
             '--workers', '1', '--threads', '4']


def require_wrk() -> None:
    if shutil.which('wrk') is None:
        message = 'wrk is not installed: apt-get install -y wrk'
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def run_bench(*argv: str) -> list[Section]:
    return bench_main.run(bench_main.parser().parse_args(list(argv)), emit=lambda text: None)


def assert_measured(section: Section, rows: int) -> Section:
    """``section`` has ``rows`` rows, and every check holds a real number."""
    assert len(section.rows) == rows, section.markdown()
    for check in section.checks:
        assert math.isfinite(check.value) and check.value >= 0, check
    return section


def test_bench_app_writes_the_bare_endpoints_bytes(tmp_path: Path) -> None:
    # The protocol benchmark compares like with like only if both write the same bytes.
    client = testing.TestClient(create_app(prepare_database(tmp_path / 'bench.sqlite3', rows=3)))
    for message in MESSAGE_NAMES:
        result = client.simulate_post('/api/messages/', body=request_body(message), headers=request_headers())
        assert result.status_code == 200
        assert result.content == RESPONSES[message]


@pytest.fixture
def reload_encoding(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """Re-imports jet_sqla.encoding under a given JET_SQLA_JSON; the original choice is restored after."""

    def reload(choice: str) -> ModuleType:
        monkeypatch.setenv('JET_SQLA_JSON', choice)
        return importlib.reload(encoding)

    yield reload
    monkeypatch.undo()
    importlib.reload(encoding)


@pytest.mark.parametrize('choice, backend', [('stdlib', 'stdlib'), ('orjson', 'orjson'), ('auto', 'orjson')])
def test_json_library_is_chosen_by_environment(
    reload_encoding: Callable[[str], ModuleType], choice: str, backend: str
) -> None:
    pytest.importorskip('orjson')
    chosen = reload_encoding(choice)
    assert chosen.BACKEND == backend
    assert chosen.dumps({'a': [1], 'when': date(2024, 1, 2)}) == b'{"a":[1],"when":"2024-01-02"}'
    with pytest.raises(chosen.DecodeError):
        chosen.loads(b'{"a": ')


def test_unknown_json_library_is_refused(reload_encoding: Callable[[str], ModuleType]) -> None:
    with pytest.raises(ValueError, match="JET_SQLA_JSON='simplejson': expected one of auto, orjson, stdlib"):
        reload_encoding('simplejson')


@pytest.fixture(scope='module')
def http_sections() -> dict[str, Section]:
    """The HTTP benchmarks, run once together (they share their servers), by name."""
    require_wrk()
    if IN_CI and not reference_venv_ready():
        # Under CI the reference is smoke-tested too: its venv takes under a minute to build.
        ensure_reference_venv()
    names = ['protocol', 'stack', 'starvation'] + (['reference'] if reference_venv_ready() else [])
    sections = run_bench('--only', ','.join(names), *TINY_HTTP, '--messages', 'get_action_list',
                         '--stacks', 'gthread,gthread+stdlib',
                         '--slow-seconds', '0.3', '--starvation-connections', '2')
    return {section.benchmark: section for section in sections}


def test_protocol(http_sections: dict[str, Section]) -> None:
    # bare, jet_sqla under plain gunicorn, jet-sqla serve, jet-sqla serve --access-log
    section = assert_measured(http_sections['protocol'], rows=4)
    assert [check.op for check in section.checks] == ['>=', '>=']


def test_server_stack(http_sections: dict[str, Section]) -> None:
    # bare and jet_sqla on gthread, jet_sqla on gthread with the stdlib json
    assert_measured(http_sections['stack'], rows=3)


def test_starvation(http_sections: dict[str, Section]) -> None:
    section = assert_measured(http_sections['starvation'], rows=4)
    done = [row[-1] for row in section.rows if row[1] != 'none']
    assert all(int(count) >= 1 for count in done), section.markdown()  # the slow actions did run


def test_reference(http_sections: dict[str, Section]) -> None:
    if 'reference' not in http_sections:
        # Locally, building it (PyPI into a Python 3.9 venv) is left to the benchmark itself.
        pytest.skip(f'the {REFERENCE_REQUIREMENT} venv is not built; `python -m bench --only reference` builds it')
    assert_measured(http_sections['reference'], rows=3)


@pytest.fixture(scope='module')
def database_sections() -> dict[str, Section]:
    """The PostgreSQL benchmarks, run once together (they share their private database), by name."""
    require_server(POSTGRES_URL)
    require_server(MARIADB_URL)
    sections = run_bench('--only', 'bulk,fk,select_all,changes', '--postgres-url', POSTGRES_URL, '--mariadb-url', MARIADB_URL,
                         '--bulk-sizes', '600', '--bulk-rows', '2000',
                         '--bulk-repeats', '1', '--fk-rows', '5000', '--fk-search', '7', '--fk-rounds', '1',
                         '--select-all-sizes', '1200', '--changes-size', '50', '--changes-turns', '2')
    return {section.benchmark + (' mariadb' if 'MariaDB' in section.title else ''): section for section in sections}


def test_bulk(database_sections: dict[str, Section]) -> None:
    section = assert_measured(database_sections['bulk'], rows=6)  # 4 hand-written loads, 2 of jet_sqla
    statements = [check.value for check in section.checks if 'statements' in check.name]
    assert statements == [1]  # one = ANY(:ids) on PostgreSQL
    section = assert_measured(database_sections['bulk mariadb'], rows=5)  # no = ANY on MariaDB
    statements = [check.value for check in section.checks if 'statements' in check.name]
    assert statements == [1]  # 600 ids: one IN list


def test_select_all(database_sections: dict[str, Section]) -> None:
    section = assert_measured(database_sections['select_all'], rows=2)
    statements = [check.value for check in section.checks if 'statements' in check.name]
    assert statements == [5]  # count(*), the excluded ids' count, and 3 keyset pages of 500


def test_changes(database_sections: dict[str, Section]) -> None:
    section = assert_measured(database_sections['changes'], rows=5)
    assert [check.name for check in section.checks] == [
        'no dry run, no audit: now / before capture', 'audit + history / audit without history']


def test_fk_options(database_sections: dict[str, Section]) -> None:
    section = assert_measured(database_sections['fk'], rows=20)
    deep_page = next(row for row in section.rows if str(row[0]).startswith('deep page offset=4,500'))
    assert 'executed in' in deep_page[-1]  # PostgreSQL's own timing, read from EXPLAIN ANALYZE


def test_jobs() -> None:
    """The background-jobs benchmark: a real jet-sqla worker on Redis, tiny sizes."""
    from .conftest import REDIS_URL, require_broker

    require_server(POSTGRES_URL)
    require_broker(REDIS_URL)
    [section] = run_bench('--only', 'jobs', '--postgres-url', POSTGRES_URL, '--jobs-records', '3000',
                          '--jobs-request-ids', '300', '--jobs-chunk-size', '250', '--jobs-broker', REDIS_URL)
    assert_measured(section, rows=4)
    assert section.raw['job']['status'] == 'succeeded' and section.raw['job']['done'] == 3000


def test_cpu_by_thread(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m bench.cpu_by_thread``: a row per server, each with a measured rate and CPU per request."""
    require_wrk()
    assert cpu_by_thread.main(['--rounds', '1', '--duration', '1', '--connections', '2']) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith('| ') and 'µs' in line]
    assert [row.split(' | ')[0].lstrip('| ') for row in rows] == [
        'bare', 'jet_sqla (plain gunicorn)', 'jet-sqla serve', 'jet-sqla serve --log-level warning']
    for row in rows:
        _, rps, total, _ = row.strip('| ').split(' | ')
        assert float(rps.replace(',', '')) > 0 and float(total.removesuffix(' µs')) > 0, row


@pytest.mark.parametrize('ephemeral_low', [32768, 1024])
def test_free_ports_are_below_the_ephemeral_range_where_outgoing_connections_take_theirs(
        monkeypatch: pytest.MonkeyPatch, ephemeral_low: int) -> None:
    """A port the kernel may hand to an outgoing connection could be gone before a server binds it."""
    monkeypatch.setattr(servers, '_ephemeral_low', lambda: ephemeral_low)
    ports = {servers.free_port() for _ in range(50)}
    if ephemeral_low == 32768:  # Linux's default range: every port below it
        assert all(servers._LOWEST_PORT <= port < 32768 for port in ports), sorted(ports)
    else:  # a range that leaves no room below it: the kernel's choice
        assert all(port >= 1024 for port in ports), sorted(ports)
    for port in ports:  # and each was free: nothing listens there
        with socket.socket() as probe:
            assert probe.connect_ex((servers.HOST, port)) != 0


def test_the_ephemeral_range_is_read_from_the_kernel(tmp_path: Path) -> None:
    ranges = tmp_path / 'ip_local_port_range'
    ranges.write_text('40000\t60999\n')
    assert servers._ephemeral_low(str(ranges)) == 40000
    assert servers._ephemeral_low(str(tmp_path / 'missing')) == 49152  # not Linux: the IANA range
