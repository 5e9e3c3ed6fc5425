"""What a user's target maps: the mappers behind a base, a registry, a MetaData, or a list of them.

A target is what users already have: a ``DeclarativeBase`` subclass, any
class that carries a registry (SQLModel's ``SQLModel``, Flask-SQLAlchemy's
``db.Model``), a ``registry``, or a ``MetaData`` whose tables are automapped.
Model classes are always the user's own; only tables that no class maps are
automapped. Tables that cannot be served are named once, with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.automap import automap_base
from sqlalchemy.orm import Mapper, registry

__all__ = ['Target', 'TargetItem', 'is_association_table', 'mappers_of', 'registries_of', 'unserved_tables']

log = logging.getLogger('jet_sqla.catalog')

#: One thing that maps models: a class carrying a registry, a registry, or a MetaData.
TargetItem = type[Any] | registry | sa.MetaData
#: A target, or a list of targets served together.
Target = TargetItem | Sequence[TargetItem]

#: Where classes keep their registry: declarative bases and db.Model, then SQLModel.
_REGISTRY_ATTRIBUTES = ('registry', '_sa_registry')


def mappers_of(target: Target) -> list[Mapper[Any]]:
    """Every mapper of ``target``, in declaration order, each once.

    Raises:
        TypeError: ``target`` (or an item of it) maps nothing.
    """
    found: dict[Mapper[Any], None] = {}
    for each in registries_of(target):
        found.update(dict.fromkeys(each.mappers))
    return list(found)


def registries_of(target: Target) -> list[registry]:
    """The registries behind ``target``, each once; a ``MetaData`` is automapped into one of its own.

    Tables that cannot be served are named here, once.

    Raises:
        TypeError: ``target`` (or an item of it) maps nothing.
    """
    items: Sequence[Any] = target if isinstance(target, (list, tuple)) else [target]
    if not items:
        raise TypeError('jet_sqla needs at least one target; got an empty list')
    found: dict[registry, None] = {}
    for item in items:
        found[_registry_of_one(item)] = None
    return list(found)


def registry_of(item: Any) -> registry | None:
    """The registry ``item`` is, or carries."""
    if isinstance(item, registry):
        return item
    if isinstance(item, type):
        for attribute in _REGISTRY_ATTRIBUTES:
            value = getattr(item, attribute, None)
            if isinstance(value, registry):
                return value
    return None


def _registry_of_one(item: Any) -> registry:
    if isinstance(item, sa.MetaData):
        return _automap(item)
    found = registry_of(item)
    if found is None:
        raise TypeError(
            'jet_sqla needs a DeclarativeBase subclass, a class carrying a registry (SQLModel, db.Model), '
            f'a sqlalchemy.orm.registry, a MetaData, or a list of them; not {item!r}'
        )
    metadata = getattr(item, 'metadata', None)
    if isinstance(metadata, sa.MetaData):
        _warn_unserved(metadata, {mapper.local_table for mapper in found.mappers})
    return found


def _automap(metadata: sa.MetaData) -> registry:
    base = automap_base(metadata=metadata)
    # Columns are all jet_sqla needs; generated relationships can clash on real schemas.
    # Class names carry the schema, so same-named tables of two schemas stay apart.
    base.prepare(generate_relationship=_no_relationship, classname_for_table=_class_name)
    automapped: registry = base.registry
    _warn_unserved(metadata, {mapper.local_table for mapper in automapped.mappers})
    return automapped


def _class_name(base: Any, tablename: str, table: sa.Table) -> str:
    return f'{table.schema}.{tablename}' if table.schema else tablename


def _no_relationship(*args: Any, **kwargs: Any) -> None:
    return None


def is_association_table(table: sa.Table) -> bool:
    """A many-to-many link: every column belongs to one of exactly two foreign keys."""
    constraints = [constraint for constraint in table.constraints if isinstance(constraint, sa.ForeignKeyConstraint)]
    if len(constraints) != 2:
        return False
    linked = {column for constraint in constraints for column in constraint.columns}
    return all(column in linked for column in table.columns)


def unserved_tables(metadata: sa.MetaData, mapped: set[Any]) -> list[tuple[sa.Table, str]]:
    """The tables of ``metadata`` no mapper serves, each with the reason."""
    unserved = []
    for table in metadata.sorted_tables:
        if table in mapped:
            continue
        if is_association_table(table):
            reason = 'is an association table (a many-to-many link) and is not served as a collection'
        elif not table.primary_key.columns:
            reason = 'has no primary key and is not served as a collection'
        else:
            reason = 'is mapped by no class and is not served as a collection'
        unserved.append((table, reason))
    return unserved


def _warn_unserved(metadata: sa.MetaData, mapped: set[Any]) -> None:
    for table, reason in unserved_tables(metadata, mapped):
        log.warning('table %r %s', table.fullname, reason)
