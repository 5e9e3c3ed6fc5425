"""The console's table of records: a collection's columns, and the labels of the rows its foreign keys name.

``list_records`` answers with raw column values; a foreign-key column holds a
key (``user_id = 3``) that means little to an operator. These helpers add,
for each foreign-key column, the related collection's name and the label of
each key on the page ("Grace Hopper"), found with one ``SELECT … WHERE key IN
(…)`` per foreign-key column, never one query per row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .collection import Collection
from .fields import field_for_column_type
from .field_options import FieldOptions
from .options import ForeignKeyOptions

__all__ = ['describe_columns', 'related_labels']


def _foreign_keys(collection: Collection, options: FieldOptions) -> dict[str, ForeignKeyOptions]:
    # By attribute name, as FieldOptions.derived keys them.
    return {name: source for name, source in options.derived(collection).items() if isinstance(source, ForeignKeyOptions)}


def describe_columns(collection: Collection, options: FieldOptions) -> list[dict[str, Any]]:
    """Each column's name and Jet field; a foreign key also names its related collection (``related``)."""
    foreign = _foreign_keys(collection, options)
    described = []
    for column in collection.table.columns:
        # By attribute name, as the records are listed: ``state = mapped_column('status_col')`` is ``state``.
        name = collection.attribute_name(column)
        entry: dict[str, Any] = {'name': name, 'field': field_for_column_type(column.type).value}
        if name in foreign:
            entry['related'] = foreign[name].related.name
        described.append(entry)
    return described


def related_labels(session: Session, collection: Collection, options: FieldOptions,
                   rows: Sequence[Mapping[Any, Any]]) -> dict[str, dict[str, str]]:
    """``{attribute: {key as text: label}}`` for the keys the foreign-key columns of ``rows`` hold.

    ``rows`` are result mappings of ``SELECT`` on the collection's table (read by column).
    A key whose row is gone (no constraint enforced it) is left out: the table shows the bare key.
    """
    labels: dict[str, dict[str, str]] = {}
    for name, source in _foreign_keys(collection, options).items():
        column = collection.column_named(name)
        if column is None:
            continue
        values = sorted({row[column] for row in rows if row[column] is not None}, key=str)
        if not values:
            continue
        label = source.related.label
        statement = sa.select(source.value_column, label).where(source.value_column.in_(values))
        found = session.execute(statement).all()
        labels[name] = {str(value): str(text) for value, text in found if text is not None}
    return labels
