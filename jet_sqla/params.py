"""Action params: a function's signature, or ``params=[Param(...)]``, -> the action's form.

A form is declared once, by annotations (``amount: Decimal``) or explicitly
(``params=[Param('amount', field='DecimalField')]``). The form itself, and
the validation of submitted values, is :mod:`jet_sqla.forms`.
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

from .catalog import Catalog
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
from .fields import Field, field_for_python_type
from .forms import MISSING, RESERVED_KEYS, Form, FormField
from .options import EnumOptions, ForeignKeyOptions, Option, OptionsSource

__all__ = ['Param', 'form_from_params', 'form_from_signature', 'resolve_hints']

log = logging.getLogger(__name__)


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



def form_from_params(params: Sequence[Param], catalog: Catalog, owner: str) -> Form:
    """A form declared explicitly with ``params=[Param(...), ...]``.

    Raises:
        TypeError: a param has no name, or neither a type nor a field.
    """
    fields = []
    for param in params:
        if not param.name:
            raise TypeError(f'{owner}: every Param in params= needs a name')
        annotation, extra, optional = _unwrap(param.type)
        if extra is not None:
            raise TypeError(f'{owner}: Param {param.name!r}: give type= a plain type, not Annotated[...]')
        required = param.required if param.required is not None else (param.default is MISSING and not optional)
        fields.append(_make_field(param.name, annotation, param, required, catalog, owner))
    return _checked_form(fields, owner)


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
        annotation, param, optional = _unwrap(hints.get(parameter.name, parameter.annotation))
        param = param or Param()
        if annotation is inspect.Parameter.empty and param.type is not None:
            annotation, _, type_optional = _unwrap(param.type)
            optional = optional or type_optional
        default = parameter.default if parameter.default is not inspect.Parameter.empty else MISSING
        if param.default is not MISSING:
            default = param.default
        required = param.required if param.required is not None else (default is MISSING and not optional)
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
    return _checked_form(fields, owner)


def resolve_hints(function: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of ``function``, ``Annotated`` extras kept.

    Raises:
        TypeError: an annotation names something that cannot be found (a class
            defined inside a function, with postponed annotations); the message
            names the function and the parameter.
    """
    try:
        return typing.get_type_hints(function, include_extras=True)
    except NameError:
        pass
    # Resolve one by one, only to name the parameter at fault.
    hints: dict[str, Any] = {}
    for name, annotation in getattr(function, '__annotations__', {}).items():
        probe = types.SimpleNamespace(__annotations__={name: annotation}, __globals__=function.__globals__)
        try:
            hints.update(typing.get_type_hints(probe, include_extras=True))
        except NameError as error:
            raise TypeError(
                f'{function.__qualname__}: parameter {name!r} is annotated {annotation!r}, which cannot be '
                f'resolved ({error}); define the type at module level'
            ) from None
    return hints


def _unwrap(annotation: Any) -> tuple[Any, Param | None, bool]:
    """``Annotated[X | None, Param(...)] | None`` -> ``(X, Param(...), True)``."""
    annotation, optional = _strip_optional(annotation)
    param = None
    if typing.get_origin(annotation) is Annotated:
        annotation, *extras = typing.get_args(annotation)
        param = next((extra for extra in extras if isinstance(extra, Param)), None)
        annotation, inner_optional = _strip_optional(annotation)
        optional = optional or inner_optional
    return annotation, param, optional


def _checked_form(fields: Sequence[FormField], owner: str) -> Form:
    seen: set[str] = set()
    for field in fields:
        if field.name in RESERVED_KEYS:
            raise TypeError(
                f'{owner}: a form field may not be named {field.name!r}; '
                f'{", ".join(sorted(RESERVED_KEYS))} carry the request itself'
            )
        if field.name in seen:
            raise TypeError(f'{owner}: two form fields are named {field.name!r}')
        seen.add(field.name)
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
    try:
        explicit = Field.parse(param.field) if param.field is not None else None
    except ValueError as error:
        raise TypeError(f'{owner}: parameter {name!r}: {error}') from None
    if explicit is None and param.options is not None:
        explicit = Field.SELECT
    common: dict[str, Any] = {
        'required': required,
        'default': None if param.default is MISSING else param.default,
        'label': param.label,
        'description': param.description,
    }
    python_type = typing.get_origin(annotation) or annotation
    if annotation is None or annotation is inspect.Parameter.empty:
        if explicit is Field.FOREIGN_KEY:
            raise TypeError(f'{owner}: parameter {name!r} is a ForeignKey; give it a mapped class as its type')
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
    if explicit is Field.FOREIGN_KEY:
        raise TypeError(
            f'{owner}: parameter {name!r} is a ForeignKey, so its type must be a mapped class or a collection '
            f'name, not {annotation!r}'
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
    coerce: Coercer
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
    # Compared as coerced, so Decimal('1.50') matches an option written '1.50'.
    allowed = set()
    for option in options:
        try:
            allowed.add(coerce(option.value))
        except ValueError:
            allowed.add(option.value)
    shown = ', '.join(repr(option.value) for option in options[:10]) + (', …' if len(options) > 10 else '')

    def check(raw: Any) -> Any:
        value = coerce(raw)
        if value not in allowed:
            text = repr(raw)
            raise ValueError(f'{text if len(text) <= 40 else text[:37] + "..."} is not one of {shown}')
        return value

    return check
