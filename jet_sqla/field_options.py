"""Where every select box's options come from: :class:`FieldOptions`.

Custom functions come first, then the options a column derives with no user
code (:func:`jet_sqla.options.column_options`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .catalog import Catalog
from .collection import Collection
from .options import CustomOptions, OptionsSource, column_options

__all__ = ['FieldOptions']


class FieldOptions:
    """Where every select box's options come from: custom functions first, then derived ones.

    Derived column options are worked out once per collection, when first asked.
    """

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._custom: dict[tuple[str, str, str], CustomOptions] = {}
        self._derived: dict[str, dict[str, OptionsSource]] = {}
        # PERF: (collection, field as asked) -> its source, found once: the lookup walked the
        # collection's columns on every options page. Only fields that have options are kept, so it
        # grows with the schema, not with what clients ask; a new custom function empties it.
        self._for_column: dict[tuple[str, str], OptionsSource] = {}

    def add_custom(self, kind: str, owner: str, field: str, function: Callable[..., Iterable[Any]]) -> None:
        """Register ``function`` for ``field`` of the collection or action ``owner``.

        Raises:
            ValueError: the field already has a custom options function.
        """
        key = (kind, owner, field)
        if key in self._custom:
            raise ValueError(f'{kind} {owner!r} already has an options function for {field!r}')
        self._custom[key] = CustomOptions(function)
        self._for_column.clear()

    def custom(self, kind: str, owner: str, field: str) -> CustomOptions | None:
        return self._custom.get((kind, owner, field))

    def derived(self, collection: Collection) -> dict[str, OptionsSource]:
        """The options every column of ``collection`` gets with no user code, by attribute name."""
        sources = self._derived.get(collection.name)
        if sources is None:
            sources = {}
            for column in collection.table.columns:
                source = column_options(self.catalog, collection, column)
                if source is not None:
                    sources[collection.attribute_name(column)] = source
            self._derived[collection.name] = sources
        return sources

    def for_column(self, collection: Collection, field: str) -> OptionsSource | None:
        """The source of a collection field's options, or ``None``; ``field`` is an attribute or column name."""
        source = self._for_column.get((collection.name, field))
        if source is None:
            source = self._find_for_column(collection, field)
            if source is not None:
                self._for_column[collection.name, field] = source
        return source

    def remembered(self, collection_name: str, field: str) -> OptionsSource | None:
        """What :meth:`for_column` found for ``field`` of the collection so named, if it was asked before.

        PERF: a request for a field asked before skips the catalog's lookups.
        """
        return self._for_column.get((collection_name, field))

    def _find_for_column(self, collection: Collection, field: str) -> OptionsSource | None:
        custom = self.custom('collection', collection.name, field)
        if custom is not None:
            return custom
        column = collection.column_named(field)
        if column is None:
            return None
        attribute = collection.attribute_name(column)
        return self.custom('collection', collection.name, attribute) or self.derived(collection).get(attribute)
