"""Action declaration: a plain function and the decorator's arguments become an :class:`Action`.

The function's signature says everything: which parameter takes the records,
which take the context or the session, and which are the form. Declaration
checks it all once, so that a run only looks things up.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.orm import Session

from .catalog import Catalog
from .collection import Collection
from .errors import InvalidParams, NotFound
from .forms import Form
from .params import Param, form_from_params, form_from_signature, resolve_hints

__all__ = ['Action', 'ActionContext', 'ActionRegistry', 'Actor', 'Allow', 'ModelRef', 'declare_action']

Actor = Mapping[str, Any]
Allow = Callable[[Actor | None], bool]
ModelRef = type[Any] | str


class ActionContext:
    """What an action may want to know about the run. Ask for it with a parameter annotated ``ActionContext``.

    Attributes:
        session: The session of the action's transaction.
        collection: The collection name (``None`` for a common action).
        model: The mapped class (``None`` for a common action).
        ids: The ids as coerced, in request order, duplicates removed; for a
            "select all" (``inverseIds``), the ids it runs on, in primary-key order.
        actor: The JWT's claims, or ``None`` for a shared-token request.
        request: The framework's request object (a ``falcon.Request``), or ``None``.
        action: The action's name.
        params: The form values as submitted, before coercion.
        dry_run: This run is a preview: its transaction will be rolled back, so
            skip what it would do outside the database (mail, webhooks).
    """

    __slots__ = ('session', 'collection', 'model', 'ids', 'actor', 'request', 'action', 'params', 'dry_run')

    def __init__(
        self,
        *,
        session: Session,
        collection: str | None,
        model: type[Any] | None,
        ids: list[Any],
        actor: Actor | None,
        request: Any,
        action: str,
        params: Mapping[str, Any],
        dry_run: bool = False,
    ) -> None:
        self.session = session
        self.collection = collection
        self.model = model
        self.ids = ids
        self.actor = actor
        self.request = request
        self.action = action
        self.params = params
        self.dry_run = dry_run

    def __repr__(self) -> str:
        return f'<ActionContext {self.action} on {self.collection} ids={self.ids!r}>'


class Action:
    """A declared action: its function, where it applies, and its form."""

    __slots__ = (
        'name', 'function', 'collections', 'for_instance', 'bulk', 'form', 'lock', 'allow', 'timeout',
        'label', 'description', 'instance_parameter', 'context_parameters', 'session_parameters',
        'needs_session', 'background', 'chunk_size', 'icon', 'preview',
    )

    def __init__(
        self,
        *,
        name: str,
        function: Callable[..., Any],
        collections: Sequence[Collection],
        for_instance: bool,
        bulk: bool,
        form: Form,
        lock: bool,
        allow: Allow | None,
        timeout: float | None,
        label: str | None,
        description: str | None,
        instance_parameter: str | None,
        context_parameters: Sequence[str],
        session_parameters: Sequence[str],
        background: bool = False,
        chunk_size: int = 500,
        icon: str | None = None,
        preview: bool = True,
    ) -> None:
        self.name = name
        self.icon = icon
        self.function = function
        self.collections = tuple(collections)
        self.for_instance = for_instance
        self.bulk = bulk
        self.form = form
        self.lock = lock
        self.allow = allow
        self.timeout = timeout
        self.label = label
        self.description = description
        self.instance_parameter = instance_parameter
        self.context_parameters = tuple(context_parameters)
        self.session_parameters = tuple(session_parameters)
        #: Runs as a background job (jet_sqla.jobs): record actions once per chunk of ``chunk_size`` records.
        self.background = background
        self.chunk_size = chunk_size
        #: Dry runs are allowed; ``False`` for actions whose outside effects cannot be skipped.
        self.preview = preview
        #: The run loads records or hands out the session, so it needs a transaction.
        self.needs_session = bool(
            for_instance or self.context_parameters or self.session_parameters or timeout is not None
            or any(field.related is not None for field in form)
        )

    def __repr__(self) -> str:
        return f'<Action {self.name}>'

    def describe(self) -> dict[str, Any]:
        """The action as ``get_action_list`` sends it."""
        described: dict[str, Any] = {'name': self.name}
        if self.label is not None:
            described['label'] = self.label
            described['verbose_name'] = self.label  # the key jet-django used for the same text
        if self.description is not None:
            described['description'] = self.description
        if self.icon is not None:
            described['icon'] = self.icon
        if self.collections:
            names = [collection.name for collection in self.collections]
            described['model_action'] = {
                'model': names[0] if len(names) == 1 else names,
                'for_instance': self.for_instance,
                'bulk': self.bulk,
            }
        else:
            described['common_action'] = {}
        described['params'] = self.form.describe()
        if not self.preview:
            described['preview'] = False
        return described

    def collection_for(self, requested: Any) -> Collection | None:
        """The collection a request runs on: the only one, or the one it names.

        Raises:
            MessageError: the action serves several collections and none, or another, is named.
        """
        if not self.collections:
            return None
        if requested is None or requested == '':
            if len(self.collections) == 1:
                return self.collections[0]
            names = ', '.join(collection.name for collection in self.collections)
            raise InvalidParams({'model': f'this action serves {names}; say which one'})
        for collection in self.collections:
            if collection.name == requested:
                return collection
        names = ', '.join(collection.name for collection in self.collections)
        raise InvalidParams({'model': f'{str(requested)[:100]!r} is not one of {names}'})

    def permits(self, actor: Actor | None) -> bool:
        return self.allow is None or bool(self.allow(actor))


def declare_action(
    function: Callable[..., Any],
    catalog: Catalog,
    *,
    model: ModelRef | Sequence[ModelRef] | None = None,
    for_instance: bool = False,
    bulk: bool = False,
    params: Sequence[Param] | None = None,
    lock: bool = False,
    allow: Allow | None = None,
    timeout: float | None = None,
    name: str | None = None,
    label: str | None = None,
    description: str | None = None,
    background: bool = False,
    chunk_size: int | None = None,
    icon: str | None = None,
    preview: bool = True,
) -> Action:
    """Build an :class:`Action` from a function and the decorator's arguments.

    Raises:
        TypeError, ValueError: the declaration cannot work; the message names the function.
    """
    owner = function.__qualname__
    if inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function):
        raise TypeError(
            f'{owner} is an async def: jet_sqla runs actions in a thread, inside its own transaction. '
            'Write a plain def, and use the session jet_sqla gives it (a parameter annotated Session)'
        )
    if bulk and not for_instance:
        raise TypeError(f'{owner}: bulk=True needs for_instance=True')
    if for_instance and model is None:
        raise TypeError(f'{owner}: for_instance=True needs model=')
    if timeout is not None and not timeout > 0:
        raise ValueError(f'{owner}: timeout must be a positive number of seconds')
    if chunk_size is not None and not background:
        raise TypeError(f'{owner}: chunk_size= needs background=True')
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f'{owner}: chunk_size must be a positive number of records')
    if icon is not None and (not isinstance(icon, str) or not icon):
        raise TypeError(f'{owner}: icon must be the non-empty name of a Jet Admin icon')
    refs: Sequence[ModelRef] = [] if model is None else (list(model) if isinstance(model, (list, tuple)) else [model])  # type: ignore[list-item]
    try:
        collections = [catalog.get(ref) for ref in refs]
    except NotFound as error:  # a typo in model=: say which names would do
        known = ', '.join(sorted(collection.name for collection in catalog)) or 'none'
        raise NotFound(f'{owner}: {error.message}; the collections are: {known}') from None
    if for_instance:
        for collection in collections:
            if not collection.has_single_pk:
                raise TypeError(f'{owner}: {collection.name!r} has a composite primary key; record actions need a single one')

    hints = resolve_hints(function)
    signature = inspect.signature(function)
    instance_parameter = None
    context_parameters: list[str] = []
    session_parameters: list[str] = []
    form_parameters: list[inspect.Parameter] = []
    takes_kwargs = False
    for parameter in signature.parameters.values():
        annotation = hints.get(parameter.name)
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            takes_kwargs = True
        elif parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            raise TypeError(f'{owner}: parameter {parameter.name!r} must be passable by name')
        elif _is_subclass(annotation, ActionContext):
            context_parameters.append(parameter.name)
        elif _is_subclass(annotation, Session):
            session_parameters.append(parameter.name)
        elif for_instance and instance_parameter is None:
            _check_instance_annotation(owner, parameter.name, annotation, bulk, collections)
            instance_parameter = parameter.name
        else:
            form_parameters.append(parameter)
    if for_instance and instance_parameter is None:
        raise TypeError(f'{owner}: a record action takes the record{"s" if bulk else ""} as its first parameter')
    if params is not None:
        if form_parameters:
            raise TypeError(f'{owner}: with params=, form values arrive as **kwargs; remove {form_parameters[0].name!r}')
        if not takes_kwargs:
            raise TypeError(f'{owner}: with params=, the function must take **kwargs')
        form = form_from_params(params, catalog, owner)
    else:
        form = form_from_signature(function, form_parameters, hints, catalog)
    return Action(
        name=name or function.__name__,
        function=function,
        collections=collections,
        for_instance=for_instance,
        bulk=bulk,
        form=form,
        lock=lock,
        allow=allow,
        timeout=timeout,
        label=label,
        description=description if description is not None else inspect.getdoc(function),
        instance_parameter=instance_parameter,
        context_parameters=context_parameters,
        session_parameters=session_parameters,
        background=background,
        chunk_size=chunk_size or 500,
        icon=icon,
        preview=preview,
    )


def _is_subclass(annotation: Any, base: type) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, base)


def _check_instance_annotation(
    owner: str, parameter: str, annotation: Any, bulk: bool, collections: Sequence[Collection]
) -> None:
    if annotation is None:
        return
    is_list = typing.get_origin(annotation) in (list, Sequence, typing.get_origin(Sequence[int]))
    if bulk and isinstance(annotation, type) and any(annotation is c.model for c in collections):
        raise TypeError(f'{owner}: a bulk action receives a list; annotate {parameter!r} as list[{annotation.__name__}]')
    if not bulk and is_list:
        raise TypeError(f'{owner}: {parameter!r} is a list, but the action is not bulk=True')


class ActionRegistry:
    """The declared actions, by name, in declaration order."""

    def __init__(self) -> None:
        self._actions: dict[str, Action] = {}
        self._by_function: dict[Callable[..., Any], Action] = {}

    def add(self, action: Action) -> None:
        if action.name in self._actions:
            raise ValueError(f'an action named {action.name!r} is already declared')
        self._actions[action.name] = action
        self._by_function[action.function] = action

    def get(self, name: str) -> Action | None:
        return self._actions.get(name)

    def for_function(self, function: Callable[..., Any]) -> Action | None:
        return self._by_function.get(function)

    def __iter__(self) -> typing.Iterator[Action]:
        return iter(self._actions.values())

    def __len__(self) -> int:
        return len(self._actions)
