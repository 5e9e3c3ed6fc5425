"""Which label columns of large PostgreSQL tables lack the index that makes ``q`` searches fast.

Option searches run ``label ILIKE '%term%'``. No B-tree index serves a pattern
with a leading wildcard, so on a large table PostgreSQL reads rows until it has
a page of matches, or the whole table when there are few. A trigram GIN index
(the ``pg_trgm`` extension) serves ILIKE with any wildcard::

    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    CREATE INDEX CONCURRENTLY customers_name_trgm ON customers USING gin (name gin_trgm_ops);

The check reads only the system catalogs: the planner's row estimate
(``pg_class.reltuples``, no ``count(*)``) and the table's indexes, one small
query per collection. It says nothing when it cannot tell: another database,
a table never analysed, an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa

from .collection import Collection

__all__ = ['LARGE_TABLE_ROWS', 'MissingSearchIndex', 'missing_search_indexes', 'trigram_index_statement']

log = logging.getLogger(__name__)

#: Tables with at least this many rows (as estimated) are worth an index for searches.
LARGE_TABLE_ROWS = 100_000

_CHECK = sa.text("""
SELECT c.reltuples::bigint AS estimated_rows,
       EXISTS (
           SELECT 1
           FROM pg_index AS i
           JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
           JOIN pg_opclass AS o ON o.oid = ANY (i.indclass)
           WHERE i.indrelid = c.oid AND a.attname = :column
             AND o.opcname IN ('gin_trgm_ops', 'gist_trgm_ops')
       ) AS indexed
FROM pg_class AS c
WHERE c.oid = to_regclass(:table)
""")


@dataclass(frozen=True)
class MissingSearchIndex:
    """A large table whose label column no trigram index covers."""

    collection: str
    table: str
    column: str
    estimated_rows: int

    @property
    def statement(self) -> str:
        return trigram_index_statement(self.table, self.column)


def trigram_index_statement(table: str, column: str) -> str:
    """The statements that create the trigram index for searches on ``table.column``."""
    name = f'{table.rsplit(".", 1)[-1]}_{column}_trgm'[:63]
    return ('CREATE EXTENSION IF NOT EXISTS pg_trgm; '
            f'CREATE INDEX CONCURRENTLY {name} ON {table} USING gin ({column} gin_trgm_ops);')


def missing_search_indexes(engine: sa.Engine, collections: Iterable[Collection],
                           min_rows: int = LARGE_TABLE_ROWS) -> list[MissingSearchIndex]:
    """The collections with a string label, at least ``min_rows`` rows and no trigram index on it.

    Empty on any database but PostgreSQL, and wherever the catalogs cannot be read.
    """
    if engine.dialect.name != 'postgresql':
        return []
    preparer = engine.dialect.identifier_preparer
    found: list[MissingSearchIndex] = []
    try:
        with engine.connect() as connection:
            for collection in collections:
                label = collection.label
                if not isinstance(label.type, sa.String) or isinstance(label.type, sa.Enum):
                    continue  # searches cast other labels to text: no plain column index serves them
                table = preparer.format_table(collection.table)
                row = connection.execute(_CHECK, {'table': table, 'column': label.name}).first()
                if row is not None and row.estimated_rows >= min_rows and not row.indexed:
                    found.append(MissingSearchIndex(collection.name, table, preparer.quote(label.name),
                                                    int(row.estimated_rows)))
    except sa.exc.SQLAlchemyError as error:
        log.debug('could not read the catalogs for search indexes: %s', error)
        return []
    return found
