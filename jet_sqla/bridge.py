"""Bridge: the one entry point. It wires the catalog, actions, options, auth and HTTP layer."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any, TypeVar, overload

import falcon
import sqlalchemy as sa
from sqlalchemy.orm import Session

from . import encoding, http, wiring
from .auth import Authenticator, configured_public_key, configured_tokens
from .catalog import Catalog, CollectionNamer, Target
from .changes import DEFAULT_MAX_CHANGES
from .declaration import Action, ActionRegistry, Allow, ModelRef, declare_action
from .errors import NotFound
from .field_options import FieldOptions
from .jobs import DEFAULT_QUEUE
from .handlers import Handlers, default_handlers
from .options import MAX_SEARCH_LENGTH
from .params import Param
from .permissions import JetPermissions
from .runs import ExecuteRequest
from .sessions import SessionFactory

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from .actions import Executor
    from .audit import AuditLog
    from .history import RunHistory
    from .jobs import Jobs
    from .messages import Dispatcher

__all__ = ['DEFAULT_QUERY_TIMEOUT', 'Bridge']

#: Seconds an options or listing statement may run, by default: a label search answers in
#: milliseconds, and a longer one holds a database backend for nothing.
DEFAULT_QUERY_TIMEOUT = 5.0
log = logging.getLogger('jet_sqla')

F = TypeVar('F', bound=Callable[..., Any])
#: ``mount`` returns the very app it was given: a falcon.App, a Flask app, a Starlette or FastAPI app.
AppT = TypeVar('AppT')

#: One line, so that it reads the same as key=value or as JSON: a multi-line box came out as one escaped string.
INSECURE_WARNING = (
    'NO AUTHENTICATION: jet_sqla is running with insecure=True, so anyone who can reach this server can run '
    'every action. Set a token (token=, JET_SQLA_TOKEN or jet-sqla serve --token) before exposing it.'
)


class Bridge:
    """Serves the Jet messages protocol for a set of SQLAlchemy models.

    Args:
        target: A ``DeclarativeBase`` subclass, any class carrying a registry
            (SQLModel's ``SQLModel``, Flask-SQLAlchemy's ``db.Model``), a
            ``registry``, a ``MetaData`` (its tables are automapped to classes),
            or a list of these.
        engine: The engine actions run on. An ``AsyncEngine`` gets a sync engine
            on the same database. May be left out when ``session_factory`` is
            bound, or when ``target`` is ``db.Model`` and the bridge is mounted
            on the Flask app.
        session_factory: The app's own ``sessionmaker``, or any zero-argument
            callable returning a ``Session``: actions, id loading and option
            queries run in its sessions, with its events, filters and binds.
        token: A shared token, or several (for rotation). Defaults to the
            comma-separated ``JET_SQLA_TOKEN``.
        insecure: Run with no authentication at all; logs a loud warning.
            Defaults to ``JET_SQLA_INSECURE=1``.
        jwt_public_key: Jet Admin's RS256 public key (PEM text, or a path to
            it). Defaults to ``JET_SQLA_JWT_PUBLIC_KEY``.
        project: The project a JWT must grant. Defaults to ``JET_SQLA_PROJECT``.
        collection_name: Names a collection from its mapper.
        labels: The label column per model or collection name, for options.
        prefix: The URL prefix of every route.
        max_body_size: Bodies over this many bytes get a 413.
        max_ids: Requests naming more ids get a 413.
        audit: Log every run in ``jet_sqla_action_log`` and allow idempotency keys.
        history: Also store what each successful run changed (``get_run``,
            ``list_runs``, ``undo_run``); on by default with ``audit``.
        max_changes: Rows a dry run or a history entry itemizes at most; past
            them, only the counts grow and the run says ``truncated``.
        console: Serve the console page at ``{prefix}/console/``.
        cors_origins: Origins a browser may call from; ``None`` turns CORS off.
        retries: How many times a deadlocked run is retried.
        default_schema: The schema whose tables get unprefixed names.
        query_timeout: Seconds each statement of an options or listing read may
            run (a search, a page of rows); past it the database stops it and the
            client gets a 504. ``None`` turns the bound off.
        max_search_length: The longest search term ``q``, in characters; longer
            gets a 400.
        broker: The Redis or RabbitMQ URL background actions are sent
            through, to ``jet-sqla worker`` processes. Defaults to
            ``JET_SQLA_BROKER_URL``; without one, they run on a thread pool
            inside the serving process.
        max_job_ids: Background runs naming more ids get a 413.
        job_queue: The Celery queue of background chunks. Defaults to
            ``JET_SQLA_JOB_QUEUE``, else ``jet_sqla``.
        job_threads: Threads of the embedded runner, per serving process.
        jet_permissions: Apply the permissions Jet Admin puts in a JWT's
            project grant: a JWT user runs an action on a collection only as its
            owner, in its super group, or with ``w`` on that collection.

    Raises:
        ValueError: no authentication is configured and ``insecure`` is false.
    """

    # Built over the database by wiring.wire_database: in the constructor, or when an integration
    # learns of the database later (Flask-SQLAlchemy, at init_app).
    engine: sa.Engine
    session_factory: SessionFactory | None
    sessions: Callable[[], Session]
    audit: AuditLog | None
    executor: Executor
    history: RunHistory
    #: Options and listings read through this engine (see wiring.wire_database).
    read_engine: sa.Engine
    dispatcher: Dispatcher
    jobs: Jobs

    def __init__(
        self,
        target: Target,
        *,
        engine: sa.Engine | AsyncEngine | None = None,
        session_factory: SessionFactory | None = None,
        token: str | Sequence[str] | None = None,
        insecure: bool | None = None,
        jwt_public_key: str | bytes | None = None,
        project: str | None = None,
        collection_name: CollectionNamer | None = None,
        labels: Mapping[type[Any] | str, str] | None = None,
        prefix: str = '/api',
        max_body_size: int = 1024 * 1024,
        max_ids: int = 100_000,
        audit: bool = False,
        console: bool = False,
        cors_origins: str | list[str] | None = '*',
        retries: int = 3,
        default_schema: str | None = None,
        query_timeout: float | None = DEFAULT_QUERY_TIMEOUT,
        max_search_length: int = MAX_SEARCH_LENGTH,
        jet_permissions: bool = False,
        history: bool | None = None,
        max_changes: int = DEFAULT_MAX_CHANGES,
        broker: str | None = None,
        max_job_ids: int = 10_000_000,
        job_queue: str | None = None,
        job_threads: int = 2,
    ) -> None:
        sync_engine = wiring.engine_given(engine, session_factory)
        #: Flask-SQLAlchemy's extension when ``target`` is its ``db.Model``: the engine and db.session come from it.
        self.flask_db: Any = getattr(target, '__fsa__', None)
        #: The session factory the user gave, if any; integrations leave it in charge.
        self.user_session_factory = session_factory
        if sync_engine is None and self.flask_db is None:
            raise TypeError('Bridge needs engine= or a bound session_factory=; '
                            'or use Bridge.reflect(url) for a database without models')
        if insecure is None:
            insecure = os.environ.get('JET_SQLA_INSECURE', '') == '1'
        self.authenticator = Authenticator(
            configured_tokens(token),
            jwt_public_key=configured_public_key(jwt_public_key),
            project=project or os.environ.get('JET_SQLA_PROJECT') or None,
            insecure=insecure,
        )
        self._warned_insecure_in: int | None = None
        self._warn_if_insecure()
        self.catalog = Catalog(target, collection_name=collection_name, labels=labels,
                               default_schema=default_schema)
        self.actions = ActionRegistry()
        self.options = FieldOptions(self.catalog)
        #: Handler-style functions for this bridge only; module-level ones apply too.
        self.messages = Handlers(parent=default_handlers)
        if jet_permissions and not self.authenticator.accepts_jwt:
            raise ValueError('jet_permissions=True needs jwt_public_key= and project=: permissions come from the JWT')
        self.prefix = prefix
        self.max_body_size = max_body_size
        self.console = console
        self.cors_origins = cors_origins
        #: What the services over the database are built with (again by ``use_database``).
        self.settings = wiring.Settings(
            audit=audit, history=audit if history is None else history, max_changes=max_changes,
            max_ids=max_ids, max_job_ids=max_job_ids, retries=retries,
            permissions=JetPermissions() if jet_permissions else None,
            query_timeout=query_timeout, max_search_length=max_search_length,
            broker=broker or os.environ.get('JET_SQLA_BROKER_URL') or None,
            job_queue=job_queue or os.environ.get('JET_SQLA_JOB_QUEUE') or DEFAULT_QUEUE, job_threads=job_threads,
        )
        #: Entered around every request and run (a Flask app context, once mounted on Flask).
        self.app_context: Callable[[], Any] | None = None
        if sync_engine is not None:
            self.use_database(sync_engine, session_factory)

    def use_database(self, engine: sa.Engine, session_factory: SessionFactory | None = None) -> None:
        """Run on ``engine``, in sessions from ``session_factory`` (a private sessionmaker by default).

        Called by the constructor, and by integrations that know the database
        only later (Flask-SQLAlchemy, at ``init_app``).
        """
        self.engine = engine
        #: The app's own session factory, if one was given (else a private sessionmaker is used).
        self.session_factory = session_factory
        wiring.wire_database(self, engine, session_factory)

    @classmethod
    def reflect(
        cls,
        database_url: str | sa.Engine | AsyncEngine,
        *,
        schemas: Sequence[str | None] = (None,),
        **kwargs: Any,
    ) -> Bridge:
        """Serve every table of an existing database that has no models.

        Tables are reflected once, here, with their foreign keys and enum types,
        and automapped to classes.

        Args:
            database_url: A URL, or an engine; an async one is answered with a sync engine.
            schemas: The schemas to reflect; ``None`` is the default schema.
            **kwargs: As for :class:`Bridge`.
        """
        engine, metadata = wiring.reflected(database_url, schemas)
        kwargs.setdefault('default_schema', sa.inspect(engine).default_schema_name)
        return cls(metadata, engine=engine, **kwargs)

    def collection_name(self, model: type[Any] | str) -> str:
        """The collection name of a mapped class (``'users'``, or ``'schema.table'``)."""
        return self.catalog.get(model).name

    @overload
    def action(self, function: F, /) -> F: ...

    @overload
    def action(
        self,
        function: None = None,
        /,
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
        icon: str | None = None,
        background: bool = False,
        chunk_size: int | None = None,
        preview: bool = True,
    ) -> Callable[[F], F]: ...

    def action(self, function: F | None = None, /, **options: Any) -> F | Callable[[F], F]:
        """Declare an action; the function is returned unchanged.

        Args:
            model: A mapped class, a collection name, or a list of either;
                ``None`` makes a common action.
            for_instance: The action runs on selected records, passed as the
                first parameter.
            bulk: All selected records arrive in one call, as a list.
            params: An explicit form, for functions that take ``**kwargs``.
            lock: Load the records (and ForeignKey params) ``FOR UPDATE``.
            allow: ``allow(actor) -> bool`` decides who may run it.
            timeout: Seconds each statement may take, where the database supports it.
            name: The action's name; the function's name by default.
            label: What the operator reads; also sent as ``verbose_name``.
            description: Help text; the docstring by default.
            icon: The name of the Jet Admin icon shown with the action.
            background: Run as a background job: ``execute_action`` answers
                at once with the job's id, and a record action is called once
                per chunk of ``chunk_size`` records (500), each chunk in its own
                transaction.
            chunk_size: Records per chunk of a background record action.
            preview: ``False`` refuses dry runs (for actions whose effects
                outside the database cannot be skipped).

        Raises:
            TypeError, ValueError, NotFound: the declaration cannot work.
        """

        def register(func: F) -> F:
            self.actions.add(declare_action(func, self.catalog, **options))
            return func

        return register(function) if function is not None else register

    def field_options(self, target: type[Any] | str | Callable[..., Any], field: str) -> Callable[[F], F]:
        """Declare the options of a field, overriding derived ones.

        Args:
            target: A mapped class or collection name (for its column or field
                ``field``), or an action's function (for its param ``field``).
            field: The field name.

        The decorated function receives, by name, any of ``form``, ``q``,
        ``limit``, ``offset``, ``after``, ``session`` and ``actor``, and returns
        a list of :class:`Option` (or ``{"value", "name", "color"}`` dicts).
        """
        action = self._action_of(target)

        def register(func: F) -> F:
            if action is not None:
                if action.form.get(field) is None:
                    raise ValueError(f'action {action.name!r} has no param {field!r}')
                self.options.add_custom('action', action.name, field, func)
            else:
                collection = self.catalog.get(target)  # type: ignore[arg-type]
                self.options.add_custom('collection', collection.name, field, func)
            return func

        return register

    def _action_of(self, target: Any) -> Action | None:
        if isinstance(target, str) or target in self.catalog:
            return None
        action = self.actions.for_function(target)
        if action is None:
            raise ValueError(f'{target!r} is neither a mapped class, a collection, nor a declared action')
        return action

    def execute(
        self,
        name: str,
        *,
        model: str | None = None,
        params: Mapping[str, Any] | None = None,
        actor: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        dry_run: bool = False,
        inverse: bool = False,
    ) -> dict[str, Any]:
        """Run an action as execute_action would, without HTTP; returns the decoded response.

        ``inverse=True`` runs it on every record except ``params['ids']`` ("select all").
        """
        action = self.actions.get(name)
        if action is None:
            raise NotFound(f'Unknown action {name!r}')
        self._require_database()
        with self._run_context():
            body = self.executor.execute(ExecuteRequest(action, collection=model, params=params or {}, actor=actor,
                                                        idempotency_key=idempotency_key, inverse=inverse, dry_run=dry_run))
        result: dict[str, Any] = encoding.loads(body)
        return result

    def mount(self, app: AppT) -> AppT:
        """Serve jet_sqla under ``prefix`` in an app you already have.

        ``app`` is a ``falcon.App`` (the routes are added to it), a Flask app,
        or a Starlette/FastAPI app (jet_sqla is mounted under the prefix, so one
        process serves both). Nothing is changed in ``app`` unless all is ready.

        Raises:
            TypeError: ``app`` is none of these.
            RuntimeError: ``audit=True`` and the log table does not exist.
        """
        from .integrations import mounting
        return mounting.mount(self, app)

    def init_app(self, app: AppT) -> AppT:
        """The Flask-style alias of :meth:`mount`, for app factories."""
        return self.mount(app)

    def _run_context(self) -> Any:
        """Where a run outside a request (a chunk, ``execute()``) runs: Flask's app context once mounted there."""
        return self.app_context() if self.app_context is not None else nullcontext()

    def _require_database(self) -> None:
        if getattr(self, 'executor', None) is None:
            raise RuntimeError('this bridge has no database yet: mount it on the Flask app first '
                               '(bridge.init_app(app)), or pass engine= or session_factory=')

    def wsgi_app(self) -> falcon.App[falcon.Request, falcon.Response]:
        """A Falcon app serving this bridge: ``gunicorn 'myapp.jet:app'`` with ``app = bridge.wsgi_app()``."""
        return http.create_app(cors_origins=self.cors_origins, **self._route_options())

    def _warn_if_insecure(self) -> None:
        # Once per process: a preloading server builds and starts the bridge in its master (one line);
        # a server that imports it in each worker prints it once per worker.
        if self.authenticator.insecure and self._warned_insecure_in != os.getpid():
            self._warned_insecure_in = os.getpid()
            log.warning(INSECURE_WARNING, extra={'insecure': True})

    def _route_options(self, route_prefix: str | None = None) -> dict[str, Any]:
        """What the HTTP layer needs; checked and warned about as the server starts.

        Args:
            route_prefix: Where the routes go in the Falcon app, when another app
                strips the bridge's prefix before it (Flask, Starlette mounts).
        """
        return wiring.route_options(self, route_prefix)
