"""Money conservation under concurrency, against gunicorn on real PostgreSQL and MariaDB.

Jepsen-style: many clients move money between a few wallets at once, then the
final state is checked against what the clients were told. Every 2xx must be
applied exactly once, every 4xx not at all, the total never changes, and the
audit log holds one row per answered run. The same check, run against an action
that does not lock its rows, must catch the lost updates: that is how we know
the check can fail.
"""

from __future__ import annotations

import collections
import json
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import Bridge
from jet_sqla.audit import action_log
from jet_sqla.errors import DatabaseUnavailable

from .apps.server import Gunicorn, gunicorn
from .apps.wallets import TREASURY, WALLETS, Base, Wallet, balances, fill, prepare
from .conftest import TOKEN, database_url, fresh_engine

pytestmark = pytest.mark.e2e

SERVER_DIALECTS = ['postgresql', 'mariadb']
INITIAL_BALANCE = Decimal('100.00')
REQUESTS = 2000
CLIENTS = 8
#: One request in this many is a bulk ``tax`` over a random set of wallets.
TAX_EVERY = 7
#: The unlocked run sends batches of this size until it sees a violation, at most this many batches.
UNLOCKED_BATCH = 200
UNLOCKED_MAX_BATCHES = 5
RUN_DEADLINE_SECONDS = 90


def seed() -> int:
    """A fresh seed per run (printed), or ``JET_SQLA_TEST_SEED`` to replay a plan."""
    chosen = os.environ.get('JET_SQLA_TEST_SEED')
    return int(chosen) if chosen else random.SystemRandom().randrange(2**32)


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Print a figure so that it shows in CI output even when the test passes."""
    with capsys.disabled():
        print(f'\n[reliability] {line}', flush=True)


def control_line(figures: str) -> str:
    """A control run's line: its violations are the point, so the line says so before anyone reads them."""
    return f'control, expected to break (no locks, to show the check can fail), as it did: {figures}'


def test_the_control_line_says_it_is_expected() -> None:
    line = control_line('conservation sqlite lock=False seed=1: lost 3 cents violations=[...]')
    assert line.startswith('control, expected to break') and line.endswith('violations=[...]')


@dataclass
class Operation:
    """One execute_action a client sends, and what it got back."""

    action: str
    form: dict[str, Any]
    model: str | None = None
    status: int | None = None
    body: Any = None
    failure: str | None = None

    @property
    def ref(self) -> str:
        return str(self.form['ref'])

    def effects(self) -> dict[int, Decimal]:
        """What this operation does to each wallet when it is applied."""
        if self.action == 'tax':
            moved = collections.Counter({wallet: Decimal(-1) for wallet in self.form['ids']})
            moved[TREASURY] += len(self.form['ids'])
            return dict(moved)
        amount = Decimal(self.form['amount'])
        return {self.form['source']: -amount, self.form['target']: amount}


def plan(rng: random.Random, count: int, transfer_action: str, with_tax: bool) -> list[Operation]:
    """``count`` operations between random wallets; amounts large enough that some must be refused."""
    operations = []
    for number in range(count):
        ref = f'{number}-{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}'
        if with_tax and number % TAX_EVERY == 0:
            payers = rng.sample(range(2, WALLETS + 1), rng.randint(2, 8))
            operations.append(Operation('tax', {'ids': payers, 'treasury': TREASURY, 'ref': ref}, model='wallets'))
        else:
            source, target = rng.sample(range(1, WALLETS + 1), 2)
            amount = Decimal(rng.randint(1, 6000)) / 100
            operations.append(Operation(transfer_action, {'source': source, 'target': target,
                                                          'amount': str(amount), 'ref': ref}))
    return operations


def send_all(server: Gunicorn, operations: Sequence[Operation], clients: int = CLIENTS) -> float:
    """Send the operations from ``clients`` threads at once; returns the wall time in seconds."""
    deadline = time.monotonic() + RUN_DEADLINE_SECONDS
    start = threading.Barrier(clients)

    def work(share: Sequence[Operation]) -> None:
        client = server.client()
        start.wait()
        try:
            for operation in share:
                if time.monotonic() > deadline:
                    operation.failure = 'not sent: the run passed its deadline'
                    continue
                try:
                    reply = client.execute(operation.action, operation.model, **operation.form)
                except OSError as error:
                    operation.failure = f'{type(error).__name__}: {error}'
                    continue
                operation.status, operation.body = reply.status, reply.body
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(operations[index::clients],)) for index in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(RUN_DEADLINE_SECONDS + 30)
    return time.perf_counter() - started


@dataclass
class Verdict:
    """Every invariant, checked against the database after a run."""

    statuses: collections.Counter[int | None]
    expected_total: Decimal
    actual_total: Decimal
    wrong_balances: dict[int, tuple[Decimal, Decimal]]
    negative_balances: dict[int, Decimal]
    negative_in_replies: list[str]
    failures: list[str]
    audit_problems: list[str] = field(default_factory=list)
    audit_rows: int | None = None  # None until check_audit ran

    @property
    def conserved(self) -> bool:
        return self.actual_total == self.expected_total

    def violations(self) -> list[str]:
        found = []
        if not self.conserved:
            found.append(f'total is {self.actual_total}, expected {self.expected_total}')
        if self.wrong_balances:
            found.append(f'{len(self.wrong_balances)} wallets differ from the replay of the 2xx answers: '
                         f'{dict(list(self.wrong_balances.items())[:5])}')
        if self.negative_balances:
            found.append(f'negative balances: {self.negative_balances}')
        if self.negative_in_replies:
            found.append(f'negative balances in replies: {self.negative_in_replies[:5]}')
        server_errors = {status: count for status, count in self.statuses.items() if status is None or status >= 500}
        if server_errors:
            found.append(f'server errors or no answer: {server_errors}; {self.failures[:5]}')
        found.extend(self.audit_problems[:10])
        return found

    def summary(self) -> str:
        by_class = collections.Counter('none' if status is None else f'{status // 100}xx' for status in self.statuses.elements())
        audited = '' if self.audit_rows is None else f' audit_rows={self.audit_rows} audit_problems={len(self.audit_problems)}'
        return (f'requests={sum(self.statuses.values())} {dict(sorted(by_class.items()))} '
                f'total={self.actual_total} (expected {self.expected_total}) '
                f'replay_mismatches={len(self.wrong_balances)} negative={len(self.negative_balances)}{audited}')


def check(engine: sa.Engine, operations: Sequence[Operation], initial: dict[int, Decimal]) -> Verdict:
    """Replay every 2xx on the initial balances and compare with the database; nothing else may have applied."""
    expected = dict(initial)
    negative_in_replies = []
    for operation in operations:
        if operation.status is not None and 200 <= operation.status < 300:
            for wallet, delta in operation.effects().items():
                expected[wallet] += delta
            negative_in_replies.extend(
                f'{operation.ref}: {value}' for value in _reply_balances(operation.body) if value < 0
            )
    actual = balances(engine)
    return Verdict(
        statuses=collections.Counter(operation.status for operation in operations),
        expected_total=sum(initial.values(), Decimal(0)),
        actual_total=sum(actual.values(), Decimal(0)),
        wrong_balances={wallet: (actual[wallet], expected[wallet]) for wallet in actual if actual[wallet] != expected[wallet]},
        negative_balances={wallet: value for wallet, value in actual.items() if value < 0},
        negative_in_replies=negative_in_replies,
        failures=[f'{operation.ref}: {operation.failure or operation.body}' for operation in operations
                  if operation.status is None or operation.status >= 500],
    )


def _reply_balances(body: Any) -> Iterator[Decimal]:
    if not isinstance(body, dict):
        return
    for key in ('source_balance', 'target_balance'):
        if key in body:
            yield Decimal(str(body[key]))
    for value in (body.get('balances') or {}).values():
        yield Decimal(str(value))


def check_audit(engine: sa.Engine, operations: Sequence[Operation], verdict: Verdict) -> None:
    """One audit row per answered run: ``success`` for each 2xx (same ids), ``error`` for each 4xx."""
    with engine.connect() as connection:
        rows = connection.execute(sa.select(action_log.c.outcome, action_log.c.ids, action_log.c.params)).all()
    verdict.audit_rows = len(rows)
    logged: dict[str, list[tuple[str, list[str]]]] = collections.defaultdict(list)
    for row in rows:
        logged[str(json.loads(row.params).get('ref'))].append((row.outcome, json.loads(row.ids or '[]')))
    successes = sum(1 for row in rows if row.outcome == 'success')
    answered_2xx = [operation for operation in operations if operation.status is not None and 200 <= operation.status < 300]
    if successes != len(answered_2xx):
        verdict.audit_problems.append(f'{successes} success rows in the audit log for {len(answered_2xx)} 2xx answers')
    for operation in operations:
        entries = logged.get(operation.ref, [])
        if operation.status is None:
            continue
        wanted = 'success' if operation.status < 300 else 'error'
        ids = [str(value) for value in operation.form.get('ids', [])]
        if entries != [(wanted, ids)]:
            verdict.audit_problems.append(f'{operation.ref} answered {operation.status}, audit log has {entries}')


@pytest.fixture(params=SERVER_DIALECTS)
def wallets_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Gunicorn, sa.Engine, str]]:
    dialect = str(request.param)
    engine = prepare(database_url(dialect, tmp_path), INITIAL_BALANCE)
    try:
        with gunicorn('tests.apps.wallets:create_app()', database_url=engine.url.render_as_string(hide_password=False),
                      token=TOKEN, log_path=tmp_path / 'gunicorn.log') as server:
            yield server, engine, dialect
    finally:
        engine.dispose()


def test_money_is_conserved_with_locks_and_lost_without(
    wallets_server: tuple[Gunicorn, sa.Engine, str], capsys: pytest.CaptureFixture[str]
) -> None:
    server, engine, dialect = wallets_server
    run_seed = seed()
    rng = random.Random(run_seed)

    # 1. Locked transfers and bulk taxes: every invariant holds.
    initial = balances(engine)
    operations = plan(rng, REQUESTS, 'transfer', with_tax=True)
    seconds = send_all(server, operations)
    verdict = check(engine, operations, initial)
    check_audit(engine, operations, verdict)
    refused = sum(1 for operation in operations if operation.status == 400)
    report(capsys, f'conservation {dialect} lock=True seed={run_seed}: {verdict.summary()} '
                   f'refused_insufficient_funds={refused} seconds={seconds:.1f} '
                   f'rate={len(operations) / seconds:.0f}/s')
    assert verdict.violations() == [], f'seed {run_seed}\n{server.log_tail()}'
    assert sum(verdict.statuses.values()) == REQUESTS
    # The plan must exercise both paths of the actions, or the invariants prove little.
    assert 0 < refused < REQUESTS // 2, verdict.summary()
    assert any(operation.action == 'tax' and operation.status == 200 for operation in operations)

    # 2. The same traffic without locks: the check must catch the lost updates.
    fill(engine, INITIAL_BALANCE)
    initial = balances(engine)
    unlocked: list[Operation] = []
    for _ in range(UNLOCKED_MAX_BATCHES):
        batch = plan(rng, UNLOCKED_BATCH, 'transfer_unlocked', with_tax=False)
        send_all(server, batch)
        unlocked.extend(batch)
        lost = check(engine, unlocked, initial)
        if not lost.conserved:
            break
    report(capsys, control_line(f'conservation {dialect} lock=False seed={run_seed}: {lost.summary()} '
                                f'violations={lost.violations()[:2]}'))
    assert not lost.conserved, f'no lost update in {len(unlocked)} unlocked transfers: the check cannot fail?'
    assert lost.wrong_balances


def _two_wallet_bridge(dialect: str, tmp_path: Path) -> tuple[Bridge, sa.Engine]:
    engine = fresh_engine(database_url(dialect, tmp_path))
    Base.metadata.create_all(engine)
    with Session(engine) as session, session.begin():
        session.add_all([Wallet(id=1, name='one', balance=Decimal(10)), Wallet(id=2, name='two', balance=Decimal(10))])
    return Bridge(Base, engine=engine, token=TOKEN), engine


def _run_pair(run: Callable[[int, int], Any]) -> dict[tuple[int, int], Any]:
    """Run ``run(1, 2)`` and ``run(2, 1)`` at once; returns each outcome (a result or an exception)."""
    outcomes: dict[tuple[int, int], Any] = {}

    def work(first: int, second: int) -> None:
        try:
            outcomes[first, second] = run(first, second)
        except Exception as error:  # noqa: BLE001 - the test inspects it
            outcomes[first, second] = error

    threads = [threading.Thread(target=work, args=pair) for pair in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


@pytest.mark.parametrize('dialect', SERVER_DIALECTS)
def test_deadlock_before_return_is_retried_transparently(dialect: str, tmp_path: Path) -> None:
    """Two runs lock two rows in opposite orders: the database kills one, the executor runs it again."""
    bridge, engine = _two_wallet_bridge(dialect, tmp_path)
    calls: collections.Counter[int] = collections.Counter()
    both_hold_one = threading.Barrier(2, timeout=10)

    @bridge.action()
    def cross(first: int, second: int, session: Session) -> dict[str, int]:
        calls[first] += 1
        session.execute(sa.select(Wallet).where(Wallet.id == first).with_for_update()).scalar_one()
        if calls[first] == 1:
            both_hold_one.wait()
        wallet = session.execute(sa.select(Wallet).where(Wallet.id == second).with_for_update()).scalar_one()
        wallet.balance += 1
        return {'attempt': calls[first]}

    outcomes = _run_pair(lambda first, second: bridge.execute('cross', params={'first': first, 'second': second}))
    try:
        assert sorted(outcome['attempt'] for outcome in outcomes.values()) == [1, 2], outcomes
        assert sum(calls.values()) == 3
        assert balances(engine) == {1: Decimal(11), 2: Decimal(11)}
    finally:
        engine.dispose()


@pytest.mark.parametrize('dialect', SERVER_DIALECTS)
def test_deadlock_after_return_is_not_retried(dialect: str, tmp_path: Path) -> None:
    """A deadlock in the flush after the function returned: the run is refused (503), not run twice."""
    bridge, engine = _two_wallet_bridge(dialect, tmp_path)
    calls: collections.Counter[int] = collections.Counter()
    both_hold_one = threading.Barrier(2, timeout=10)

    @bridge.action()
    def cross_late(first: int, second: int, session: Session) -> None:
        calls[first] += 1
        session.execute(sa.select(Wallet).where(Wallet.id == first).with_for_update()).scalar_one()
        both_hold_one.wait()
        # Changed in memory only: the UPDATE, and so the deadlock, comes in the flush after return.
        session.get_one(Wallet, second).balance += 1

    outcomes = _run_pair(lambda first, second: bridge.execute('cross_late', params={'first': first, 'second': second}))
    try:
        refused = [outcome for outcome in outcomes.values() if isinstance(outcome, DatabaseUnavailable)]
        assert len(refused) == 1, outcomes
        assert 'try again' in refused[0].message
        assert sum(calls.values()) == 2, 'a run whose function had returned was run again'
        # Exactly the winner's change is there: the refused run left nothing.
        assert sorted(balances(engine).values()) == [Decimal(10), Decimal(11)]
    finally:
        engine.dispose()
