"""Loading many rows by primary key, in the form each database runs fastest.

- PostgreSQL: one ``pk = ANY(:ids)`` per request, the ids bound as a single
  array parameter. SQLAlchemy renders one placeholder instead of one per id,
  psycopg sends one query text (which its prepared-statement cache keeps), and
  there is one round trip instead of one per chunk. Integer keys go as the
  array's text, ``CAST(:ids AS INTEGER[])``: psycopg adapts a list element by
  element in Python, and the server parses ``{1,2,3}`` faster (BENCHMARKS.md,
  issue 16, third round).
- MariaDB 10.6+ and MySQL 8.0.4+, integer keys, no lock: ``pk IN (SELECT … FROM
  JSON_TABLE(:ids, …))`` in chunks of :func:`chunk_size`, the ids bound as one
  JSON array. PyMySQL escapes each bound value in Python; one string per chunk
  instead of one value per id made 1,000 ids load faster than even a literal
  ``IN`` list written into the SQL (BENCHMARKS.md, issue 16).
- Otherwise (a lock, other keys, older servers, SQLite and any other database):
  ``pk IN (…)`` in chunks of :func:`chunk_size` bound parameters, sized to what
  the server parses fastest and well within every server's parameter limit.

With ``lock``, rows are read ``FOR UPDATE`` in primary-key order (the ids
sorted, each statement ``ORDER BY pk``), so two runs locking overlapping rows
take their locks in the same order and cannot deadlock each other.

Large loads run with the cyclic garbage collector paused
(:func:`jet_sqla.collector.paused_gc`, re-exported here): see its docstring for
why that is safe and what it costs other threads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from .collector import GC_PAUSE_MIN_IDS, paused_gc

__all__ = ['GC_PAUSE_MIN_IDS', 'chunk_size', 'iter_by_pk', 'paused_gc', 'statement_form']

#: Ids per ``IN (…)`` statement on MariaDB/MySQL. Lists of 500 to 10,000 ids loaded
#: 10,000 rows in the same time within the noise (BENCHMARKS.md, "IN list size"), but
#: the driver buffers each statement's whole result, so longer lists hold more rows at
#: once: 1,000 keeps the peak memory near a hand-written load's, in 10 statements for
#: 10,000 ids.
MYSQL_CHUNK = 1_000
#: Ids per statement on SQLite: under 32,766, the bound-parameter limit of SQLite
#: 3.32 and later; older versions allow 999.
SQLITE_CHUNK = 5_000
SQLITE_OLD_CHUNK = 500
#: Any other database: the conservative size jet_sqla has always used.
DEFAULT_CHUNK = 500

_BIGINT_MIN, _BIGINT_MAX = -2**63, 2**63 - 1
_ABSENT = object()


def statement_form(dialect: sa.Dialect, pk: sa.Column[Any] | None = None, *, lock: bool = False) -> str:
    """How ``pk`` is looked up on this database.

    - ``'any_text'``: PostgreSQL, integer keys: one parameter, the array's text, cast by the server.
    - ``'any'``: PostgreSQL, other keys: one array parameter.
    - ``'json'``: MariaDB 10.6+ and MySQL 8.0.4+, integer keys, no lock: one JSON
      array parameter read by ``JSON_TABLE``, per chunk.
    - ``'in'``: every other case, chunked ``IN`` lists.

    Why ``'json'`` takes no lock: rows are locked in the order they are read,
    and only the ``IN`` range scan reads them in key order whatever the plan.
    """
    if dialect.name == 'postgresql':
        return 'any_text' if pk is not None and _is_integer(pk) else 'any'
    if not lock and pk is not None and _json_table_reads(dialect) and _is_integer(pk):
        return 'json'
    return 'in'


def _json_table_reads(dialect: sa.Dialect) -> bool:
    if dialect.name not in ('mysql', 'mariadb'):
        return False
    version = tuple(getattr(dialect, 'server_version_info', None) or ())
    if getattr(dialect, 'is_mariadb', False):
        return version >= (10, 6)
    return version >= (8, 0, 4)


def _is_integer(pk: sa.Column[Any]) -> bool:
    try:
        return pk.type.python_type is int
    except NotImplementedError:
        return False


def chunk_size(dialect: sa.Dialect) -> int:
    """Ids per ``IN (…)`` statement on this database."""
    if dialect.name in ('mysql', 'mariadb'):
        return MYSQL_CHUNK
    if dialect.name == 'sqlite':
        version = getattr(dialect, 'dbapi', None)
        sqlite_version = getattr(version, 'sqlite_version_info', (0,)) if version is not None else (0,)
        return SQLITE_CHUNK if tuple(sqlite_version) >= (3, 32) else SQLITE_OLD_CHUNK
    return DEFAULT_CHUNK


def iter_by_pk(
    session: Session, model: type[Any], pk_attribute: str, pk: sa.Column[Any], ids: Sequence[Any],
    *, lock: bool = False,
) -> Iterator[tuple[Any, Any]]:
    """Yield ``(pk, instance)`` for the rows of ``model`` whose key is in ``ids`` (unique, coerced)."""
    if not ids:
        return
    ordered = sorted(ids) if lock else ids
    dialect = session.get_bind(mapper=sa.inspect(model)).dialect
    form = statement_form(dialect, pk, lock=lock)
    if form == 'json' and not all(type(key) is int and _BIGINT_MIN <= key <= _BIGINT_MAX for key in ordered):
        form = 'in'  # a key JSON_TABLE's BIGINT column cannot hold (an unsigned BIGINT past 2**63)
    if form == 'any_text' and not all(type(key) is int for key in ordered):
        form = 'any'  # only an int's text is an array element's: a bool or any other value goes as a list
    statement = _statement(model, pk_attribute, pk, form, lock)
    if form in ('any', 'any_text'):
        # One bound parameter, whatever the number of ids.
        batches: Iterable[Sequence[Any]] = [ordered if isinstance(ordered, list) else list(ordered)]
    else:
        size = chunk_size(dialect)
        batches = (ordered[start:start + size] for start in range(0, len(ordered), size))
    for batch in batches:
        # PERF: the drivers convert a list's values one by one in Python: PyMySQL escapes each (about
        # 2 us an id), psycopg adapts each element of an array. The integer keys as one string instead
        # (a JSON array on MariaDB/MySQL, an array's text on PostgreSQL), bound like any other value.
        value: Any = batch
        if form == 'json':
            value = '[' + ','.join(map(str, batch)) + ']'
        elif form == 'any_text':
            value = '{' + ','.join(map(str, batch)) + '}'
        for instance in session.scalars(statement, {'jet_sqla_ids': value}):
            # PERF: a loaded key is in the instance's __dict__; the attribute's descriptor is the slow way there.
            key = instance.__dict__.get(pk_attribute, _ABSENT)
            yield (getattr(instance, pk_attribute) if key is _ABSENT else key), instance


_statements: dict[tuple[type[Any], str, str, bool], sa.Select[Any]] = {}


def _statement(model: type[Any], pk_attribute: str, pk: sa.Column[Any], form: str, lock: bool) -> sa.Select[Any]:
    """PERF: each model's statement is built once (per form and lock); a load only binds its ids."""
    key = (model, pk_attribute, form, lock)
    statement = _statements.get(key)
    if statement is None:
        statement = _statements[key] = _build_statement(model, pk_attribute, pk, form, lock)
    return statement


def _build_statement(model: type[Any], pk_attribute: str, pk: sa.Column[Any], form: str, lock: bool) -> sa.Select[Any]:
    attribute = getattr(model, pk_attribute)
    if form == 'any':
        condition = attribute == sa.any_(sa.bindparam('jet_sqla_ids', type_=postgresql.ARRAY(pk.type)))
    elif form == 'any_text':
        # The array's text, cast by the server to the key's own type: the index is used as for a typed array.
        ids = sa.cast(sa.bindparam('jet_sqla_ids', type_=sa.Text()), postgresql.ARRAY(pk.type))
        condition = attribute == sa.any_(ids)
    elif form == 'json':
        # The keys as rows: a fixed SQL text with one bound parameter, the JSON array of the keys.
        keys = sa.text("JSON_TABLE(:jet_sqla_ids, '$[*]' COLUMNS (jet_sqla_id BIGINT PATH '$')) AS jet_sqla_keys")
        keys = keys.bindparams(sa.bindparam('jet_sqla_ids', type_=sa.String()))
        condition = attribute.in_(sa.select(sa.column('jet_sqla_id')).select_from(keys))
    else:
        condition = attribute.in_(sa.bindparam('jet_sqla_ids', expanding=True))
    statement = sa.select(model).where(condition)
    if lock:
        statement = statement.order_by(attribute).with_for_update()
    return statement
