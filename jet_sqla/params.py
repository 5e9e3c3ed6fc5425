"""Action forms: a function's signature -> form fields; submitted values -> Python values.

A form is declared once, by annotations (``amount: Decimal``) or explicitly
(``params=[Param('amount', field='DecimalField')]``). :meth:`Form.validate`
checks and coerces every submitted value before an action runs, and reports
every failing field at once.
"""

from __future__ import annotations

import enum
import inspect
import logging
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from .catalog import Catalog, Collection
from .coerce import (
    Coercer,
    coerce_bool,
    coerce_date,
    coerce_datetime,
    coerce_decimal,
    coerce_float,
    coerce_int,
    coerce_json,
    coerce_str,
    coerce_time,
    coerce_timestamp,
    coercer_for_python_type,
)
from .errors import InvalidParams
from .fields import Field, field_for_python_type
from .options import EnumOptions, ForeignKeyOptions, Option, OptionsSource

__all__ = ['MISSING', 'Form', 'FormField', 'Param', 'form_from_params', 'form_from_signature']

log = logging.getLogger(__name__)


class _Missing:
    def __repr__(self) -> str:
        return 'MISSING'


#: "No default": the field is required unless it says otherwise.
MISSING: Any = _Missing()

#: Keys of an execute_action's params that belong to the request, not to the form.
RESERVED_KEYS = frozenset({'ids', 'id', 'idempotency_key'})


@dataclass(frozen=True)
class Param:
    """Describes one form field, in ``Annotated[T, Param(...)]`` or in ``params=[...]``.

    Attributes:
        name: The field name; taken from the parameter when annotated.
        field: One of the 16 Jet field names (``'TextField'``) or a :class:`Field`.
        required: Overrides what the default value and ``X | None`` imply.
        label: What the operator reads instead of the name.
        description: Help text shown under the field.
        default: The value when the field is left empty.
        type: The Python type to coerce to (``Decimal``, an Enum, a mapped class…),
            for explicit ``params=[...]``.
        options: Fixed choices of a SelectField.
    """

    name: str | None = None
    field: Field | str | None = None
    required: bool | None = None
    label: str | None = None
    description: str | None = None
    default: Any = MISSING
    type: Any = None
    options: Sequence[Option | Mapping[str, Any] | tuple[Any, ...]] | None = None


_FIELD_COERCERS: dict[Field, Coercer] = {
    Field.BOOLEAN: coerce_bool,
    Field.INTEGER: coerce_int,
    Field.FLOAT: coerce_float,
    Field.DECIMAL: coerce_decimal,
    Field.DATETIME: coerce_datetime,
    Field.TIMESTAMP: coerce_timestamp,
    Field.DATE: coerce_date,
    Field.TIME: coerce_time,
    Field.JSON: coerce_json,
}
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
        if errors:
            raise InvalidParams(errors)
        if log.isEnabledFor(logging.DEBUG):
            unknown = set(submitted) - {field.name for field in self.fields} - RESERVED_KEYS
            if unknown:
                log.debug('ignoring unknown form keys: %s', ', '.join(sorted(map(str, unknown))))
        return values


def form_from_params(params: Sequence[Param], catalog: Catalog, owner: str) -> Form:
    """A form declared explicitly with ``params=[Param(...), ...]``.

    Raises:
        TypeError: a param has no name, or neither a type nor a field.
    """
    fields = []
    for param in params:
        if not param.name:
            raise TypeError(f'{owner}: every Param in params= needs a name')
        required = param.required if param.required is not None else param.default is MISSING
        fields.append(_make_field(param.name, param.type, param, required, catalog, owner))
    return Form(fields)


def form_from_signature(
    function: Callable[..., Any],
    parameters: Sequence[inspect.Parameter],
    hints: Mapping[str, Any],
    catalog: Catalog,
) -> Form:
    """The form of a function's form parameters, from their annotations and defaults.

    Raises:
        TypeError: an annotation maps to no field; the message names the
            function and the parameter.
    """
    owner = function.__qualname__
    fields = []
    for parameter in parameters:
        annotation = hints.get(parameter.name, parameter.annotation)
        param = Param()
        if typing.get_origin(annotation) is Annotated:
            annotation, *extras = typing.get_args(annotation)
            param = next((extra for extra in extras if isinstance(extra, Param)), param)
        annotation, optional = _strip_optional(annotation)
        default = parameter.default if parameter.default is not inspect.Parameter.empty else MISSING
        if param.default is not MISSING:
            default = param.default
        required = param.required if param.required is not None else (default is MISSING and not optional)
        if annotation is inspect.Parameter.empty:
            annotation = param.type
        fields.append(
            _make_field(
                param.name or parameter.name,
                annotation,
                Param(**{**param.__dict__, 'default': None if default is MISSING else default}),
                required,
                catalog,
                owner,
            )
        )
    return Form(fields)


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(annotation, False)``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(members) == 1 and len(members) < len(typing.get_args(annotation)):
            return members[0], True
    return annotation, False


def _make_field(
    name: str, annotation: Any, param: Param, required: bool, catalog: Catalog, owner: str
) -> FormField:
    explicit = Field.parse(param.field) if param.field is not None else None
    common = {
        'required': required,
        'default': None if param.default is MISSING else param.default,
        'label': param.label,
        'description': param.description,
    }
    python_type = typing.get_origin(annotation) or annotation
    if annotation is None or annotation is inspect.Parameter.empty:
        if explicit is None:
            raise TypeError(f'{owner}: parameter {name!r} has no type annotation and no Param(field=...)')
        return _field_of_type(name, explicit, None, param, common)
    if isinstance(python_type, str) and python_type in catalog:
        python_type = catalog.get(python_type).model
    if isinstance(python_type, type) and python_type in catalog:
        related = catalog.get(python_type)
        if not related.has_single_pk:
            raise TypeError(f'{owner}: parameter {name!r} refers to {related.name!r}, whose key is composite')
        return FormField(
            name, explicit or Field.FOREIGN_KEY, related.coerce_id, related=related,
            options=ForeignKeyOptions(related), **common,
        )
    if not isinstance(python_type, type) or field_for_python_type(python_type) is None:
        raise TypeError(
            f'{owner}: parameter {name!r} is annotated {annotation!r}, which maps to no Jet field; '
            'use a supported type, a mapped class, or Annotated[..., Param(field=...)]'
        )
    field = explicit or field_for_python_type(python_type)
    assert field is not None
    return _field_of_type(name, field, python_type, param, common)


def _field_of_type(
    name: str, field: Field, python_type: type | None, param: Param, common: dict[str, Any]
) -> FormField:
    if field is Field.TIMESTAMP:
        coerce = coerce_timestamp
    elif python_type is not None:
        coerce = coercer_for_python_type(python_type)
    else:
        coerce = _FIELD_COERCERS.get(field, coerce_str)
    options: OptionsSource | None = None
    if python_type is not None and issubclass(python_type, enum.Enum):
        options = EnumOptions.from_enum_class(python_type)
    if param.options is not None:
        fixed = [Option.of(item) for item in param.options]
        options = EnumOptions(fixed)
        coerce = _one_of(fixed, coerce)
    return FormField(name, field, coerce, options=options, **common)


def _one_of(options: Sequence[Option], coerce: Coercer) -> Coercer:
    allowed = {option.value for option in options}

    def check(raw: Any) -> Any:
        value = coerce(raw)
        if value not in allowed:
            raise ValueError(f'{value!r} is not one of the choices')
        return value

    return check
