"""7. Background jobs on PostgreSQL: a job over every record of a table, on 2 Celery worker processes, vs the
in-request bulk path over fewer ids, the same action, in the same run.

Both run one plain ORM action (``item.total += quantity * price + 1``, an UPDATE per
row). The in-request run is one ``execute_action`` over ``request_ids`` listed ids,
in one transaction. The background job is ``execute_action`` with ``inverseIds: true``
and no ids (every record), accepted, then run in chunks by ``jet-sqla worker
--concurrency 2`` through the broker; its time runs from the request until
``get_job`` reads ``succeeded``. Accepting is also timed against one
``get_action_list`` of the same app.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from falcon import testing

from bench.jobs_app import ACTION, Base, declare
from bench.payloads import BENCH_TOKEN, dumps
from bench.report import Check, Section, median, ms
from jet_sqla import Bridge, migrations

TARGET_THROUGHPUT = 0.8
TARGET_ACCEPT_S = 2.0
REPO = Path(__file__).resolve().parents[1]
HEADERS = {'Authorization': f'Bearer {BENCH_TOKEN}', 'Content-Type': 'application/json'}


def populate(engine: sa.Engine, rows: int) -> None:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(sa.text(
            'INSERT INTO bench_items (id, quantity, price, total) '
            'SELECT g, g % 7, g % 1000, 0 FROM generate_series(1, :rows) AS g'), {'rows': rows})
        connection.execute(sa.text('ANALYZE bench_items'))
    migrations.upgrade(engine)


def _post(http: testing.TestClient, name: str, params: dict[str, Any]) -> tuple[float, Any]:
    body = dumps({'name': name, 'params': params})
    started = time.perf_counter()
    response = http.simulate_post('/api/messages/', body=body, headers=HEADERS)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f'{name}: {response.status_code} {response.text[:300]}')
    return elapsed, response.json


def _wait(http: testing.TestClient, job: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        _, state = _post(http, 'get_job', {'job': job})
        if state['status'] in ('succeeded', 'failed', 'cancelled'):
            return dict(state)
        if time.monotonic() > deadline:
            raise RuntimeError(f'job {job} not finished after {timeout:.0f} s: {state}')
        time.sleep(0.1)


def run(engine: sa.Engine, records: int, request_ids: int, *, broker: str, chunk_size: int = 500,
        concurrency: int = 2) -> Section:
    populate(engine, records)
    queue = f'jet_sqla_bench_{os.getpid()}'
    url = engine.url.render_as_string(hide_password=False)
    bridge = Bridge(Base, engine=engine, token=BENCH_TOKEN, broker=broker, job_queue=queue)
    declare(bridge, chunk_size)
    http = testing.TestClient(bridge.wsgi_app())
    environment = {**os.environ, 'JET_SQLA_DATABASE_URL': url, 'JET_SQLA_BROKER_URL': broker,
                   'JET_SQLA_JOB_QUEUE': queue, 'JET_SQLA_TOKEN': BENCH_TOKEN, 'BENCH_CHUNK_SIZE': str(chunk_size)}
    result = Section(
        f'Background jobs on PostgreSQL: {records:,} records on {concurrency} worker processes vs '
        f'{request_ids:,} ids in one request',
        ['run', 'records', 'time', 'records/s', '/ in-request'],
    )
    with tempfile.TemporaryFile() as log:
        worker = subprocess.Popen(
            [str(Path(sys.executable).with_name('jet-sqla')), 'worker', 'bench.jobs_app:bridge',
             '--concurrency', str(concurrency), '--log-level', 'warning'],
            cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT)
        try:
            # Warm-up: the workers are up, connected and have imported everything.
            _, warm = _post(http, 'execute_action', {'name': f'{ACTION}_background',
                                                     'params': {'ids': list(range(1, 2 * chunk_size + 1))}})
            _wait(http, warm['job'], 120)
            listing = [_post(http, 'get_action_list', {})[0] for _ in range(21)]
            in_request_form = {'name': ACTION, 'params': {
                'ids': ','.join(str(i) for i in range(records - request_ids + 1, records + 1))}}
            # The baseline runs before and after the job, so a change of the machine's load while the
            # job runs shows as two different baselines instead of skewing one.
            before, _ = _post(http, 'execute_action', in_request_form)
            started = time.perf_counter()
            accept, receipt = _post(http, 'execute_action', {'name': f'{ACTION}_background', 'inverseIds': True,
                                                             'params': {}})
            state = _wait(http, receipt['job'], 3600)
            background = time.perf_counter() - started
            after, _ = _post(http, 'execute_action', in_request_form)
            in_request = (before + after) / 2
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
            log.seek(0)
            tail = log.read()[-2000:].decode(errors='replace')
    if state['status'] != 'succeeded' or state['done'] != records:
        raise RuntimeError(f'the job did not do every record: {state}\n{tail}')
    per_request = request_ids / in_request
    per_job = records / background
    listing_s = median(listing)
    result.add('in-request bulk (execute_action), before the job', f'{request_ids:,}', ms(before),
               f'{request_ids / before:,.0f}', f'{before / in_request:.2f}x of the mean time')
    result.add('in-request bulk (execute_action), after the job', f'{request_ids:,}', ms(after),
               f'{request_ids / after:,.0f}', f'{after / in_request:.2f}x of the mean time')
    result.add(f'background job ({receipt["chunks"]:,} chunks of {chunk_size})', f'{records:,}', ms(background),
               f'{per_job:,.0f}', f'{per_job / per_request:.2f}x')
    result.add('accepting the job (execute_action)', f'{records:,}', ms(accept), '',
               f'{accept / listing_s:,.0f}x one get_action_list ({ms(listing_s)})')
    result.checks.append(Check('background records/s / in-request records/s', per_job / per_request, '>=',
                               TARGET_THROUGHPUT))
    result.checks.append(Check('accepting the job', accept, '<', TARGET_ACCEPT_S, ' s'))
    result.notes.append('the ratio compares the job with the mean of the two in-request runs')
    result.notes.append(f'one worker command with --concurrency {concurrency} (2 pool processes), '
                        f'broker {broker.split("@")[-1]}; the web side and the workers share the machine\'s cores')
    result.raw.update({'in_request_s': [before, after], 'background_s': background, 'accept_s': accept,
                       'get_action_list_s': listing, 'job': state})
    return result
