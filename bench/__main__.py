"""Run jet_sqla's benchmarks and print their tables (``python -m bench --help``).

Every figure is a ratio against a baseline measured in the same run, in
alternating turns, and reported as a median: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.report import Section

BENCHMARKS = ('protocol', 'stack', 'reference', 'starvation', 'bulk', 'fk', 'select_all', 'jobs', 'changes')
DEFAULT_POSTGRES_URL = 'postgresql+psycopg://postgres@127.0.0.1:5432/postgres'
DEFAULT_MARIADB_URL = 'mysql+pymysql://root@127.0.0.1:3306/mysql'
BULK_DATABASES = ('postgresql', 'mariadb')


def _sizes(text: str) -> list[int]:
    return [int(part.replace('_', '')) for part in text.split(',') if part.strip()]


def _names(text: str) -> list[str]:
    names = [part.strip() for part in text.split(',') if part.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise argparse.ArgumentTypeError(f'unknown benchmark {", ".join(unknown)}; choose from {", ".join(BENCHMARKS)}')
    return names


def _databases(text: str) -> list[str]:
    names = [part.strip() for part in text.split(',') if part.strip()]
    unknown = [name for name in names if name not in BULK_DATABASES]
    if unknown:
        raise argparse.ArgumentTypeError(f'unknown database {", ".join(unknown)}; choose from {", ".join(BULK_DATABASES)}')
    return names


def parser() -> argparse.ArgumentParser:
    from bench.server_stack import VARIANTS

    p = argparse.ArgumentParser(prog='python -m bench', description=__doc__.splitlines()[0])
    p.add_argument('--only', type=_names, default=list(BENCHMARKS),
                   help=f'comma-separated benchmarks to run (default: all of {",".join(BENCHMARKS)})')
    http = p.add_argument_group('HTTP benchmarks (protocol, stack, reference, starvation)')
    http.add_argument('--duration', type=float, default=2.0, help='seconds per wrk run (default 2; at least 1)')
    http.add_argument('--rounds', type=int, default=5,
                      help='alternating rounds of the protocol and reference comparisons (default 5)')
    http.add_argument('--stack-rounds', type=int, default=3,
                      help='alternating rounds of the stack comparison (default 3: it loads 15 servers)')
    http.add_argument('--starvation-rounds', type=int, default=3,
                      help='rounds of the starvation benchmark (default 3)')
    http.add_argument('--connections', type=int, default=10, help='wrk connections (default 10)')
    http.add_argument('--wrk-threads', type=int, default=2, help='wrk threads (default 2)')
    http.add_argument('--workers', type=int, default=2, help='gunicorn/jet-bridge worker processes (default 2)')
    http.add_argument('--threads', type=int, default=4, help='threads per gthread worker (default 4)')
    http.add_argument('--stacks', default=','.join(VARIANTS),
                      help=f'server stacks of the stack benchmark (default: {",".join(VARIANTS)})')
    http.add_argument('--messages', default='get_action_list,execute_action',
                      help='messages of the protocol, stack and reference benchmarks (default: both)')
    http.add_argument('--slow-seconds', type=float, default=1.0, help='duration of each slow action (default 1)')
    http.add_argument('--starvation-connections', type=int, default=4,
                      help='wrk connections asking get_action_list while slow actions run (default 4)')
    db = p.add_argument_group('database benchmarks (bulk on PostgreSQL and MariaDB, fk, select_all and changes on PostgreSQL)')
    db.add_argument('--postgres-url', default=os.environ.get('BENCH_POSTGRES_URL', DEFAULT_POSTGRES_URL),
                    help='a server where a private database bench_<pid> is created and dropped')
    db.add_argument('--mariadb-url', default=os.environ.get('BENCH_MARIADB_URL', DEFAULT_MARIADB_URL),
                    help='a MariaDB server where a private database bench_<pid> is created and dropped')
    db.add_argument('--bulk-databases', type=_databases, default=list(BULK_DATABASES),
                    help='databases of the bulk benchmark (default postgresql,mariadb)')
    db.add_argument('--bulk-frozen-heap', action='store_true',
                    help='gc.freeze() the process while timing bulk loads (default: a live heap, as a server has)')
    db.add_argument('--bulk-rows', type=int, default=1_000_000,
                    help='rows of the bulk table (default 1000000; at least twice the largest size)')
    db.add_argument('--bulk-sizes', type=_sizes, default=[1_000, 10_000, 100_000],
                    help='ids per bulk action (default 1000,10000,100000)')
    db.add_argument('--bulk-repeats', type=int, default=3,
                    help='alternating timed runs per variant (default 3; up to 6x more for small sizes)')
    db.add_argument('--select-all-sizes', type=_sizes, default=[10_000, 100_000],
                    help='rows of the table a "select all" runs over (default 10000,100000)')
    db.add_argument('--fk-rows', type=int, default=1_000_000, help='rows of the related table (default 1000000)')
    db.add_argument('--fk-search', default='777',
                    help="the search term q of the options benchmark (default 777: its 50th match is about "
                         "37,000 rows in)")
    db.add_argument('--fk-rounds', type=int, default=5, help='alternating rounds per options case (default 5)')
    jobs = p.add_argument_group('Background jobs benchmark (jobs: PostgreSQL and a Celery broker)')
    jobs.add_argument('--jobs-records', type=_sizes, default=[1_000_000],
                      help='records of the background job (default 1000000)')
    jobs.add_argument('--jobs-request-ids', type=_sizes, default=[100_000],
                      help='ids of the in-request bulk run it is compared with (default 100000)')
    jobs.add_argument('--jobs-broker', default=os.environ.get('BENCH_BROKER_URL', 'redis://127.0.0.1:6379/12'),
                      help='the broker the workers read (default redis://127.0.0.1:6379/12)')
    jobs.add_argument('--jobs-chunk-size', type=int, default=500, help='records per chunk (default 500)')
    db.add_argument('--changes-size', type=int, default=1_000, help='rows of the capture benchmark (default 1000)')
    db.add_argument('--changes-turns', type=int, default=60,
                    help='turns of the capture benchmark; each variant runs once per turn (default 60)')
    p.add_argument('--candidate', type=Path,
                   help='a directory holding a changed copy of the jet_sqla package: the protocol and reference '
                        'benchmarks serve it too, in the same rounds, to show what the change buys')
    p.add_argument('--json', type=Path, help='also write every raw measurement to this file')
    return p


def machine() -> str:
    """One line naming the machine the numbers come from."""
    model = ''
    try:
        model = next((line.split(':', 1)[1].strip() for line in Path('/proc/cpuinfo').read_text().splitlines()
                      if line.startswith('model name')), '')
    except OSError:
        pass
    load = ', load average {:.2f} {:.2f} {:.2f}'.format(*os.getloadavg()) if hasattr(os, 'getloadavg') else ''
    return (f'{os.cpu_count()} cores {model}, Python {platform.python_version()}, '
            f'{platform.system()} {platform.release()}{load}')


def run(args: argparse.Namespace, emit: Callable[[str], None] = print) -> list[Section]:
    """Run the selected benchmarks; ``emit`` each section's table as soon as it is done."""
    from bench import bulk, changes, fk_options, jobs, protocol, select_all, server_stack, starvation, versus_reference
    from bench.jet_app import prepare_database
    from bench.postgres import private_database
    from bench.serving import RECOMMENDED, LoadSettings, ServerPool

    load = LoadSettings(duration_s=args.duration, connections=args.connections, threads=args.wrk_threads,
                        rounds=args.rounds)
    stack = dataclasses.replace(RECOMMENDED, workers=args.workers, threads=args.threads)
    sections: list[Section] = []

    def done(name: str, section: Section, started: float) -> None:
        section.benchmark = name
        section.notes.append(f'took {time.monotonic() - started:.0f} s')
        sections.append(section)
        emit(section.markdown() + '\n')

    messages = args.messages.split(',')
    with tempfile.TemporaryDirectory(prefix='jet-sqla-bench-') as tmp, ServerPool() as pool:
        database = prepare_database(Path(tmp) / 'bench.sqlite3')
        http_benchmarks: dict[str, Callable[[], Section]] = {
            'protocol': lambda: protocol.run(pool, database, load, stack, messages=messages,
                                             candidate=args.candidate),
            'stack': lambda: server_stack.run(pool, database, dataclasses.replace(load, rounds=args.stack_rounds),
                                              args.stacks.split(','), messages,
                                              workers=args.workers, threads=args.threads),
            'reference': lambda: versus_reference.run(pool, database, load, stack, messages=messages,
                                                      candidate=args.candidate),
            'starvation': lambda: starvation.run(pool, database, dataclasses.replace(load, rounds=args.starvation_rounds),
                                                 stack, slow_seconds=args.slow_seconds,
                                                 connections=args.starvation_connections),
        }
        for name, benchmark in http_benchmarks.items():
            if name in args.only:
                started = time.monotonic()
                done(name, benchmark(), started)
    if ('bulk' in args.only and 'postgresql' in args.bulk_databases) or {'fk', 'select_all', 'jobs', 'changes'} & set(args.only):
        with private_database(args.postgres_url) as engine:
            if 'bulk' in args.only and 'postgresql' in args.bulk_databases:
                started = time.monotonic()
                done('bulk', bulk.run(engine, args.bulk_sizes, repeats=args.bulk_repeats, rows=args.bulk_rows,
                                      frozen=args.bulk_frozen_heap),
                     started)
            if 'fk' in args.only:
                started = time.monotonic()
                done('fk', fk_options.run(engine, args.fk_rows, rounds=args.fk_rounds, search=args.fk_search), started)
            if 'select_all' in args.only:
                started = time.monotonic()
                done('select_all', select_all.run(engine, args.select_all_sizes, repeats=args.bulk_repeats), started)
            if 'jobs' in args.only:
                started = time.monotonic()
                done('jobs', jobs.run(engine, args.jobs_records[0], args.jobs_request_ids[0],
                                      broker=args.jobs_broker, chunk_size=args.jobs_chunk_size), started)
            if 'changes' in args.only:
                started = time.monotonic()
                done('changes', changes.run(engine, args.changes_size, turns=args.changes_turns), started)
    if 'bulk' in args.only and 'mariadb' in args.bulk_databases:
        with private_database(args.mariadb_url) as engine:
            started = time.monotonic()
            done('bulk', bulk.run(engine, args.bulk_sizes, repeats=args.bulk_repeats, rows=args.bulk_rows,
                                      frozen=args.bulk_frozen_heap), started)
    return sections


def summary(sections: Sequence[Section]) -> str:
    """Every target, met or missed, in one table."""
    lines = ['### Targets', '', '| benchmark | target | measured | met |', '|---|---|---|---|']
    for section in sections:
        for check in section.checks:
            lines.append(f'| {section.benchmark} | {check.name} {check.op} {check.limit:g}{check.unit} | '
                         f'{check.value:.2f}{check.unit} | {"yes" if check.met else "NO"} |')
    return '\n'.join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    started = time.monotonic()
    header = (f'jet_sqla benchmarks, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n'
              f'machine: {machine()}\ncommand: python -m bench {" ".join(argv if argv is not None else sys.argv[1:])}\n')
    print(header, flush=True)
    sections = run(args, emit=lambda text: print(text, flush=True))
    print(summary(sections))
    print(f'\ntotal {time.monotonic() - started:.0f} s')
    if args.json:
        args.json.write_text(json.dumps({
            'header': header,
            'sections': [{'title': s.title, 'headers': list(s.headers), 'rows': [list(map(str, r)) for r in s.rows],
                          'notes': s.notes, 'checks': [dataclasses.asdict(c) | {'met': c.met} for c in s.checks],
                          'raw': s.raw} for s in sections],
        }, indent=1, default=str))
    return 0


if __name__ == '__main__':
    sys.exit(main())
