"""Forms: the validated, coercing fields of an action, and validation of what a client submitted.

:meth:`Form.validate` checks and coerces every submitted value before an
action runs, and reports every failing field at once. How a form is declared
(from a signature, or from ``params=[...]``) is :mod:`jet_sqla.params`.
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from .coerce import Coercer
from .collection import Collection
from .errors import InvalidParams
from .fields import Field
from .options import OptionsSource

__all__ = ['MISSING', 'RESERVED_KEYS', 'Form', 'FormField', 'missing_references']

log = logging.getLogger(__name__)


class _Missing:
    def __repr__(self) -> str:
        return 'MISSING'


#: "No default": the field is required unless it says otherwise.
MISSING: Any = _Missing()

#: Keys of an execute_action's params that belong to the request, not to the form.
RESERVED_KEYS = frozenset({'ids', 'id', 'idempotency_key', 'dry_run'})


_TEXT_FIELDS = frozenset({Field.CHAR, Field.TEXT, Field.CODE, Field.SQL, Field.TRANSLATABLE})


class FormField:
    """One validated, coercing form field.

    Attributes:
        related: For a ForeignKey, the collection its value is a key of.
        options: For a SelectField or ForeignKey, where its choices come from.
    """

    __slots__ = ('name', 'field', 'required', 'label', 'description', 'default', 'related', 'options', '_coerce')

    def __init__(
        self,
        name: str,
        field: Field,
        coerce: Coercer,
        *,
        required: bool,
        default: Any = None,
        label: str | None = None,
        description: str | None = None,
        related: Collection | None = None,
        options: OptionsSource | None = None,
    ) -> None:
        self.name = name
        self.field = field
        self._coerce = coerce
        self.required = required
        self.default = default
        self.label = label
        self.description = description
        self.related = related
        self.options = options

    def describe(self) -> dict[str, Any]:
        """The field as ``get_action_list`` sends it."""
        params: dict[str, Any] = {}
        if self.related is not None:
            params['related_model'] = {'model': self.related.name}
        if self.options is not None:
            static = self.options.static()
            if static is not None:
                params['options'] = [option.to_dict() for option in static]
        described: dict[str, Any] = {
            'name': self.name,
            'field': self.field.value,
            'required': self.required,
            'params': params,
        }
        if self.label is not None:
            described['label'] = self.label
        if self.description is not None:
            described['description'] = self.description
        return described

    def coerce(self, raw: Any) -> Any:
        """The Python value of ``raw``; for a ForeignKey, the coerced key (loaded later).

        Raises:
            ValueError: with the reason ``raw`` is refused.
        """
        if self.related is not None:
            return self.related.coerce_id(raw)
        return self._coerce(raw)

    def is_empty(self, raw: Any) -> bool:
        return raw is None or (raw == '' and (self.required or self.field not in _TEXT_FIELDS))


class Form:
    """The ordered fields of an action's form."""

    __slots__ = ('fields',)

    def __init__(self, fields: Sequence[FormField]) -> None:
        self.fields = tuple(fields)

    def __iter__(self) -> typing.Iterator[FormField]:
        return iter(self.fields)

    def get(self, name: str) -> FormField | None:
        return next((field for field in self.fields if field.name == name), None)

    def describe(self) -> list[dict[str, Any]]:
        return [field.describe() for field in self.fields]

    def validate(self, submitted: Mapping[str, Any]) -> dict[str, Any]:
        """Coerce every submitted value. ForeignKey values come back as keys, not instances.

        Raises:
            InvalidParams: listing every missing or bad field with its reason.
        """
        values: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for field in self.fields:
            raw = submitted.get(field.name)
            if field.is_empty(raw):
                if field.required:
                    errors[field.name] = 'this field is required'
                else:
                    values[field.name] = field.default
                continue
            try:
                values[field.name] = field.coerce(raw)
            except ValueError as error:
                errors[field.name] = str(error)
        if submitted and log.isEnabledFor(logging.DEBUG):  # PERF: an empty form has no unknown key to look for
            unknown = set(submitted) - {field.name for field in self.fields} - RESERVED_KEYS
            if unknown:
                log.debug('ignoring unknown form keys: %s', ', '.join(sorted(map(str, unknown))))
        if errors:
            raise InvalidParams(errors, form=True)
        return values

    def references(self, values: Mapping[str, Any]) -> list[tuple[FormField, Any]]:
        """The ForeignKey fields that were given a key, with that key, in form order."""
        return [
            (field, values[field.name])
            for field in self.fields
            if field.related is not None and values.get(field.name) is not None
        ]


def missing_references(session: Session, references: Sequence[tuple[FormField, Any]]) -> dict[str, str]:
    """The ForeignKey fields whose key names no row, each with its reason.

    Meant for after a bulk load reported missing rows: the rows it found are in
    the session already, so only the missing ones cost a query.
    """
    missing: dict[str, str] = {}
    for field, key in references:
        assert field.related is not None
        dialect = session.get_bind(mapper=field.related.model).dialect.name
        if not field.related.can_exist(key, dialect) or session.get(field.related.model, key) is None:
            missing[field.name] = f'no {field.related.name} record with id {key!r}'
    return missing

