"""The target ``jet-sqla worker`` runs in the background-job tests, and the actions it declares.

``bridge()`` builds the Bridge from the environment (database, broker, queue),
as a deployed worker would; the tests declare the same actions on their own,
in-process Bridge with :func:`declare`, to accept jobs and read their progress.
"""

from __future__ import annotations

import os
import time

import sqlalchemy as sa

from jet_sqla import ActionContext, ActionError, Bridge

from ..models import Base, Counter


def _trace(first_id: int) -> None:
    """One line per chunk started: which worker, which process, which chunk, when."""
    path = os.environ.get('JOBS_TEST_TRACE')
    if path:
        line = f'{os.environ.get("JOBS_TEST_WORKER", "web")} {os.getpid()} {first_id} {time.time():.3f}\n'
        with open(path, 'a') as trace:
            trace.write(line)


def declare(bridge: Bridge) -> None:
    @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=500)
    def bump(counters: list[Counter], ctx: ActionContext, sleep: float = 0.0, cursed: int = 0) -> None:
        """Add one to every counter; a chunk holding ``cursed`` raises; each chunk then sleeps ``sleep`` s."""
        _trace(counters[0].id)
        for counter in counters:
            if counter.id == cursed:
                raise ActionError(f'counter {cursed} is cursed')
            counter.value += 1
        ctx.session.flush()
        time.sleep(sleep)

    @bridge.action(model=Counter, for_instance=True, bulk=True, background=True, chunk_size=100)
    def bump_small(counters: list[Counter], ctx: ActionContext, sleep: float = 0.0) -> None:
        """As bump, in chunks of 100."""
        _trace(counters[0].id)
        for counter in counters:
            counter.value += 1
        ctx.session.flush()
        time.sleep(sleep)


def bridge() -> Bridge:
    url = os.environ['JET_SQLA_DATABASE_URL']
    engine = sa.create_engine(url, pool_pre_ping=True,
                              connect_args={} if url.startswith('sqlite') else {'connect_timeout': 5})
    built = Bridge(Base, engine=engine)
    declare(built)
    return built
