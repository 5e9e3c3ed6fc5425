"""Property-based fuzzing of POST /api/messages/ with hypothesis, against the real app and databases.

The invariant, for every generated request:

- the answer is a 2xx or a 4xx, never a 5xx;
- it is JSON (``application/json``, and the body parses); a 4xx carries ``title`` and ``code``;
- the database is unchanged unless an action ran to its end (each action records that it did).

Bodies are built from values that are wrong at every position of a message
(name, params, params.params, ids, id, model, field, form, q, limit, offset,
after), with huge and overflowing numbers, floats, surrogates, emoji, NUL, SQL,
nesting past any parser's limit, and raw bytes that are not JSON at all. Each
test prints how many examples it ran and the statuses they got.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from falcon import testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session

from jet_sqla import ActionError, Bridge, encoding
from jet_sqla.audit import metadata as audit_metadata

from .conftest import AUTH, PROBLEM
from .models import Account, Base, Counter, Document, Tag, Tier, User

# PostgreSQL and MariaDB pay a round trip per statement; SQLite gets the most examples.
EXAMPLES = {'sqlite': 1200, 'postgresql': 700, 'mariadb': 400}
RAW_EXAMPLES = {'sqlite': 400, 'postgresql': 200, 'mariadb': 150}
#: The standard library's JSON lets lone surrogates through, where orjson refuses them: a leg of its own.
STDLIB_EXAMPLES = 500

DOCUMENT_IDS = [uuid.UUID('00000000-0000-4000-8000-000000000001'), uuid.UUID('00000000-0000-4000-8000-000000000002')]

MESSAGE_NAMES = ['get_action_list', 'execute_action', 'get_field_options', 'list_records']
ACTION_NAMES = ['bump', 'rename', 'retag', 'configure', 'refuse', 'note']
COLLECTIONS = ['users', 'accounts', 'tags', 'documents', 'counters']
FIELDS = ['tier', 'status', 'mood', 'owner_id', 'tag_code', 'tag', 'name', 'id', 'balance', 'settings', 'nope']

SQL = [
    "1 OR 1=1", "1; DROP TABLE users; --", "' OR ''='", "1) OR (1=1", "'; DELETE FROM counters; --",
    '%', '_', '\\', "%' OR 1=1 --", 'users; --', '1 UNION SELECT * FROM accounts', '$1', ':id', '?',
]
NASTY_STRINGS = [
    '', ' ', '\x00', 'a\x00b', '\u202e', '\ufeff', '😀' * 3, '\U0010ffff', '\ud800', '\udfff', 'null', 'true',
    '[]', '{}', '1e999', '-0', '0x10', '1_000', 'NaN', 'Infinity', ' 1', '١٢٣', '9' * 30, 'a' * 5000,
    '2024-13-45', '2024-02-29T25:61:00', '00000000-0000-4000-8000-000000000001', '{' * 50, *SQL,
]
BIG_NUMBERS = [0, -1, 1, 2**31, 2**31 - 1, -(2**31), 2**53 + 1, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1,
               2**64, 10**30, -(10**30), 10**400, 1e308, -1e-308, 0.5, -0.0, 1.0, 3.0000000000000004]
#: Over the 100 characters of users.name: PostgreSQL and MariaDB refuse them, SQLite stores them.
TOO_LONG = st.sampled_from(['n' * 101, 'é' * 101, 'n' * 5000])
DEPTHS = [2, 100, 254, 255, 256, 999, 1000, 1023, 1024, 1025, 5000]

#: Where a deeply nested value goes: a placeholder string, replaced in the encoded body.
DEEP = re.compile(rb'"\\u0001DEEP(\d+)([lo])"')


# --- strategies ------------------------------------------------------------

def _deep(depth: int, kind: str) -> str:
    return f'\x01DEEP{depth}{kind}'


deep_values = st.builds(_deep, st.sampled_from(DEPTHS), st.sampled_from('lo'))
text = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=3),  # lone surrogates
    st.text(st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), max_size=5),  # emoji
    st.sampled_from(NASTY_STRINGS),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(BIG_NUMBERS),
    st.floats(allow_nan=False, allow_infinity=False), text,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
anything = st.one_of(json_values, deep_values)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly plausible values, often anything at all."""
    return st.one_of(valid, valid, anything)


id_values = st.one_of(
    st.sampled_from([1, 2, 3, 4, 5, '1', '3', 'a', 'b', *map(str, DOCUMENT_IDS)]),
    st.sampled_from(BIG_NUMBERS), st.integers(), st.floats(), st.sampled_from(SQL), text, json_values,
)
ids = st.one_of(
    st.lists(id_values, max_size=12),
    st.lists(st.sampled_from(['1', '2', '3', ' 4 ', '', *SQL, str(2**64), '1.5']), max_size=8).map(','.join),
    id_values,
    anything,
)
form_keys = st.sampled_from(['by', 'name', 'email', 'tag', 'settings', 'when', 'at', 'ratio', 'amount', 'tier',
                             'flag', 'stamp', 'note', 'idempotency_key', 'ids', 'id']) | text


def _merged(*parts: dict[str, Any]) -> dict[str, Any]:
    return {key: value for part in parts for key, value in part.items()}


form = st.one_of(
    st.builds(_merged, st.dictionaries(form_keys, maybe(id_values | scalars), max_size=6),
              st.fixed_dictionaries({}, optional={'ids': ids, 'id': id_values})),
    anything,
)
execute_params = st.fixed_dictionaries(
    {'name': maybe(st.sampled_from(ACTION_NAMES))},
    optional={'model': maybe(st.sampled_from(COLLECTIONS)), 'params': form, 'action': anything},
)
options_params = st.fixed_dictionaries(
    {'field': maybe(st.sampled_from(FIELDS))},
    optional={
        'model': maybe(st.sampled_from(COLLECTIONS)), 'action': maybe(st.sampled_from(ACTION_NAMES)),
        'form': maybe(st.dictionaries(st.sampled_from(FIELDS), scalars, max_size=3)),
        'q': maybe(st.sampled_from(SQL) | text), 'limit': maybe(st.integers(-5, 600)),
        'offset': maybe(st.integers(-5, 10)), 'after': maybe(id_values),
    },
)
list_params = st.fixed_dictionaries(
    {'model': maybe(st.sampled_from(COLLECTIONS))},
    optional={'limit': maybe(st.integers(-5, 600)), 'offset': maybe(st.integers(-5, 2**63))},
)
params = st.one_of(
    execute_params, options_params, list_params, st.just({}),
    execute_params.map(json.dumps),  # params as a string holding JSON, as the reference accepted
    anything,
)


def _mutated(valid: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """``valid`` with one of its values, or none, replaced by anything at all."""
    key = data.draw(st.sampled_from([None] * len(valid) * 2 + list(valid)))
    return valid if key is None else {**valid, key: data.draw(anything)}


# Forms that make each action run, so that runs (and their writes) are part of the mix.
runnable_forms: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    'bump': st.fixed_dictionaries({'ids': st.lists(st.sampled_from([1, 2, 3, '4', 5]), min_size=1, max_size=5)},
                                  optional={'by': st.integers()}),
    'rename': st.fixed_dictionaries({'id': st.sampled_from([1, 2, '3']), 'name': text | TOO_LONG},
                                    optional={'email': st.none() | text}),
    'retag': st.fixed_dictionaries({'ids': st.lists(st.sampled_from([str(key) for key in DOCUMENT_IDS]), min_size=1),
                                    'tag': st.sampled_from(['a', 'b'])}),
    'configure': st.fixed_dictionaries(
        {'settings': st.dictionaries(text, json_values, max_size=3) | st.just('{"a": [1, {"b": null}]}')},
        optional={'when': st.dates().map(str) | text, 'at': st.datetimes().map(str) | text,
                  'ratio': st.floats(allow_nan=False) | text, 'amount': st.decimals(allow_nan=False).map(str) | text,
                  'tier': st.sampled_from(['gold', 'GOLD', 'bronze', 'silver', 1]), 'flag': scalars,
                  'stamp': st.times().map(str) | text, 'tags': json_values}),
    'refuse': st.fixed_dictionaries({'ids': st.lists(st.sampled_from([1, 2, 3]), min_size=1, max_size=3)}),
    'note': st.fixed_dictionaries({'note': text}),
}
models_of = {'note': st.sampled_from(['users', 'tags']), 'bump': st.just('counters'), 'refuse': st.just('counters')}


BUMP = {'name': 'execute_action', 'params': {'name': 'bump', 'model': 'counters', 'params': {'ids': [1, 2]}}}
CONFIGURE = {'name': 'execute_action', 'params': {'name': 'configure', 'params': {'settings': {'a': 1}}}}


@st.composite
def runnable(draw: st.DrawFn) -> dict[str, Any]:
    """An execute_action that would run, with at most one value made hostile."""
    action = draw(st.sampled_from(ACTION_NAMES))
    data = draw(st.data())
    form = _mutated(draw(runnable_forms[action]), data)
    request: dict[str, Any] = {'name': action, 'params': form}
    if action in models_of:
        request['model'] = draw(models_of[action])
    return {'name': 'execute_action', 'params': _mutated(request, data)}


messages = st.one_of(
    runnable(), runnable(),
    st.fixed_dictionaries({'name': maybe(st.sampled_from(MESSAGE_NAMES))}, optional={'params': params}),
    st.fixed_dictionaries({'name': st.just('execute_action'), 'params': execute_params}),
    st.fixed_dictionaries({'name': st.just('get_field_options'), 'params': options_params}),
    anything,
)
#: Accept headers, and whether each asks for problem details.
ACCEPTS = {
    'application/problem+json': True,
    'APPLICATION/PROBLEM+JSON': True,
    'application/json, application/problem+json;q=0.5': True,
    'application/problem+json;q=0': False,
    'application/json': False,
    '*/*': False,
    'text/html': False,
}

headers = st.builds(
    _merged,
    st.fixed_dictionaries(
        {'Authorization': st.sampled_from([AUTH['Authorization']] * 12 + ['Bearer nope', 'JWT x.y.z', 'Basic Og=='])},
        optional={'Content-Type': st.sampled_from(['application/json', 'text/plain', 'application/x-www-form-urlencoded']),
                  # Both error dialects: Jet's (the default) and problem details, however the client asks.
                  'Accept': st.sampled_from(sorted(ACCEPTS))},
    ),
    st.one_of(*[st.just({})] * 6, st.fixed_dictionaries(
        {'Idempotency-Key': st.sampled_from(['k1', 'k2', '', 'x' * 300]) | st.uuids().map(str)})),
)


def encode(message: Any, ascii_only: bool) -> bytes:
    """JSON bytes of ``message``, its placeholders replaced by nesting of the asked depth.

    Lone surrogates leave as escapes (``ascii_only``) or as the raw bytes no UTF-8 allows.
    """
    body = json.dumps(message, ensure_ascii=True).encode() if ascii_only else \
        json.dumps(message, ensure_ascii=False).encode('utf-8', 'surrogatepass')

    def nest(found: re.Match[bytes]) -> bytes:
        depth = int(found.group(1))
        if found.group(2) == b'l':
            return b'[' * depth + b'1' + b']' * depth
        return b'{"a":' * depth + b'1' + b'}' * depth

    return DEEP.sub(nest, body)  # json.dumps always escapes the control character that marks a placeholder


raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda m, cut: encode(m, True)[:cut], messages, st.integers(0, 60)),  # truncated JSON
    st.builds(lambda m: b'\xef\xbb\xbf' + encode(m, True), messages),  # a byte-order mark
    st.builds(lambda m: json.dumps(m).encode('utf-16'), st.sampled_from([{'name': 'get_action_list'}])),
    st.sampled_from([b'', b' ', b'\x00', b'null', b'[]', b'"x"', b'1e999999', b'-', b'{"name":}', b'{"name":NaN}',
                     b'{"name": "get_action_list"}\x00', b'{"name": "get_action_list"} {}', b'\xff\xfe',
                     b'{"name":"list_records","params":{"model":"users","limit":1e400}}',
                     b'{"name":"list_records","params":{"model":"users","limit":Infinity}}',
                     b'{"name":"get_action_list","name":"execute_action"}']),
    st.binary(max_size=40).map(lambda junk: b'{"name":"execute_action","params":' + junk + b'}'),
)


# --- the app under test ------------------------------------------------------

class Runs:
    """Names of the actions that ran to their end."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def record(self, name: str) -> None:
        self.names.append(name)


def declare_actions(bridge: Bridge, runs: Runs) -> None:
    """Actions of every kind, each recording that it ran to its end (after its writes)."""

    @bridge.action(model=Counter, for_instance=True, bulk=True, lock=True)
    def bump(counters: list[Counter], by: int = 1) -> dict[str, int]:
        for counter in counters:
            counter.value = (counter.value + by) % 1000  # stays in range, whatever ``by`` was
        runs.record('bump')
        return {'count': len(counters)}

    @bridge.action(model=User, for_instance=True)
    def rename(user: User, name: str, email: str | None = None) -> None:
        user.name = name
        user.email = email
        runs.record('rename')

    @bridge.action(model=Document, for_instance=True, bulk=True)
    def retag(documents: list[Document], tag: Tag) -> None:
        for document in documents:
            document.tag_code = tag.code
        runs.record('retag')

    @bridge.action()
    def configure(settings: dict[str, Any], when: datetime.date | None = None, at: datetime.datetime | None = None,
                  ratio: float = 1.0, amount: decimal.Decimal = decimal.Decimal(0), tier: Tier = Tier.BRONZE,
                  flag: bool = False, stamp: datetime.time | None = None, tags: list[Any] | None = None) -> dict[str, Any]:
        runs.record('configure')
        return {'keys': len(settings), 'tier': tier}

    @bridge.action(model=Counter, for_instance=True, bulk=True)
    def refuse(counters: list[Counter]) -> None:
        for counter in counters:
            counter.value = 999
        raise ActionError('refused after writing; all of it must roll back')

    @bridge.action(model=[User, Tag])
    def note(note: str) -> dict[str, str]:
        runs.record('note')
        return {'echo': note}


def seed(engine: sa.Engine) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(User(id=i, name=f'user {i}', tier=Tier.GOLD if i == 1 else Tier.BRONZE) for i in (1, 2, 3))
        session.add_all([Tag(code='a', title='Alpha'), Tag(code='b', title='Beta')])
        session.flush()  # the models have no relationships to order the inserts by
        session.add_all(Account(id=i, owner_id=i, balance=decimal.Decimal('10.00')) for i in (1, 2))
        session.add_all(Document(id=key, headline=f'doc {n}', tag_code='a') for n, key in enumerate(DOCUMENT_IDS))
        session.add_all(Counter(id=i, value=0) for i in range(1, 6))


class Snapshots:
    """Every row of every model table, in primary-key order, read on a connection of its own."""

    def __init__(self, engine: sa.Engine) -> None:
        # PERF: taken twice per example; SQL compiled once and one connection kept make it cheap.
        self.connection = engine.connect()
        self.queries = [
            str(sa.select(table).order_by(*table.primary_key.columns).compile(engine))
            for table in Base.metadata.sorted_tables
        ]

    def take(self) -> list[list[tuple[Any, ...]]]:
        try:
            return [[tuple(row) for row in self.connection.exec_driver_sql(query)] for query in self.queries]
        finally:
            self.connection.rollback()  # hold no snapshot or lock between requests

    def close(self) -> None:
        self.connection.close()


class Fuzzer:
    """Sends one request, checks the invariant, and counts what happened."""

    def __init__(self, engine: sa.Engine, make_bridge: Callable[..., Bridge]) -> None:
        audit_metadata.create_all(engine)
        seed(engine)
        self.snapshots = Snapshots(engine)
        self.runs = Runs()
        self.clients: list[testing.TestClient] = []
        for audit in (False, True):
            bridge = make_bridge(audit=audit)
            declare_actions(bridge, self.runs)
            self.clients.append(testing.TestClient(bridge.wsgi_app()))
        self.statuses: collections.Counter[int] = collections.Counter()
        self.dialects: collections.Counter[str] = collections.Counter()
        self.examples = 0

    def check(self, body: bytes, request_headers: dict[str, str], audited: bool) -> None:
        before = self.snapshots.take()
        ran_before = len(self.runs.names)
        client = self.clients[audited]
        result = client.simulate_post('/api/messages/', body=body, headers=request_headers)
        self.examples += 1
        self.statuses[result.status_code] += 1
        shown = f'{body[:300]!r} -> {result.status_code} {result.text[:300]}'
        assert result.status_code < 500, shown
        assert 200 <= result.status_code < 300 or 400 <= result.status_code < 500, shown
        content_type = result.headers.get('content-type', '')
        decoded = json.loads(result.content)
        if result.status_code >= 400:
            assert isinstance(decoded, dict), shown
            self.check_error(result.status_code, content_type, decoded, request_headers.get('Accept', ''), shown)
        else:
            assert content_type.startswith('application/json'), shown
        ran = len(self.runs.names) > ran_before
        if not (ran and result.status_code < 300):
            assert self.snapshots.take() == before, f'the database changed though no action ran: {shown}'

    def check_error(self, status: int, content_type: str, body: dict[str, Any], accept: str, shown: str) -> None:
        """The error is in the dialect the Accept header asked for, and well formed in it."""
        if ACCEPTS.get(accept, False):
            self.dialects['problem'] += 1
            assert content_type.startswith('application/problem+json'), shown
            assert body['type'] == 'about:blank' and body['status'] == status, shown
            assert all(isinstance(body[key], str) and body[key] for key in ('title', 'detail', 'code')), shown
        elif status == 400:
            self.dialects['jet'] += 1
            assert content_type.startswith('application/json'), shown
            assert body and all(isinstance(reasons, list) and reasons and all(isinstance(r, str) for r in reasons)
                                for reasons in body.values()), shown
        else:
            self.dialects['jet'] += 1
            assert content_type.startswith('application/json'), shown
            assert isinstance(body['detail'], str) and body['detail'] == body['error'], shown
            assert isinstance(body['error_code'], str) and body['error_code'], shown

    def report(self, capsys: pytest.CaptureFixture[str], label: str) -> None:
        statuses = ', '.join(f'{status}: {count}' for status, count in sorted(self.statuses.items()))
        ran = collections.Counter(self.runs.names)
        with capsys.disabled():
            print(f'\n[reliability] fuzz {label}: {self.examples} requests; statuses {{{statuses}}}; '
                  f'actions ran to the end: {dict(sorted(ran.items()))}; 5xx: 0; database changes without a run: 0')


@pytest.fixture
def fuzzer(engine: sa.Engine, make_bridge: Callable[..., Bridge]) -> Iterator[Fuzzer]:
    fuzzer = Fuzzer(engine, make_bridge)
    yield fuzzer
    fuzzer.snapshots.close()


def fuzz_settings(examples: int) -> settings:
    # The examples share one app and database on purpose, hence the function-scoped fixture check is off.
    return settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])


def test_generated_messages_get_2xx_or_4xx_json_and_never_change_data_unless_an_action_ran(
    fuzzer: Fuzzer, dialect: str, capsys: pytest.CaptureFixture[str],
) -> None:
    @fuzz_settings(EXAMPLES[dialect])
    @given(message=messages, request_headers=headers, ascii_only=st.booleans(), audited=st.booleans())
    # Runs are part of the mix whatever the draw: chance alone once left 'configure' out on MariaDB.
    @example(message=BUMP, request_headers=dict(AUTH), ascii_only=True, audited=False)
    @example(message=CONFIGURE, request_headers=dict(AUTH), ascii_only=False, audited=True)
    @example(message={'name': 'nope'}, request_headers={**AUTH, **PROBLEM}, ascii_only=True, audited=False)
    # A 404 too, whatever the draw: an execute_action without a name is now a 400, and was most of the 404s.
    @example(message={'name': 'execute_action', 'params': {'name': 'nope'}}, request_headers=dict(AUTH),
             ascii_only=True, audited=False)
    def run(message: Any, request_headers: dict[str, str], ascii_only: bool, audited: bool) -> None:
        fuzzer.check(encode(message, ascii_only), request_headers, audited)

    run()
    fuzzer.report(capsys, f'messages on {dialect}')
    assert fuzzer.examples >= EXAMPLES[dialect] // 2  # hypothesis really ran them
    assert fuzzer.dialects['jet'] and fuzzer.dialects['problem'], fuzzer.dialects  # both error dialects
    assert set(fuzzer.runs.names) >= {'bump', 'configure'}, 'the fuzzer never got an action to run'
    assert len(fuzzer.statuses) >= 4


@pytest.fixture
def stdlib_json(monkeypatch: pytest.MonkeyPatch) -> None:
    """Parse and encode with the standard library, as where orjson is not installed."""
    monkeypatch.setattr(encoding, 'loads', encoding._std_loads)
    monkeypatch.setattr(encoding, 'dumps', encoding._std_dumps)


@pytest.mark.parametrize('dialect', ['sqlite'])
def test_generated_messages_with_the_standard_library_json(
    stdlib_json: None, fuzzer: Fuzzer, capsys: pytest.CaptureFixture[str],
) -> None:
    @fuzz_settings(STDLIB_EXAMPLES)
    @given(message=messages, request_headers=headers, ascii_only=st.booleans(), audited=st.booleans())
    def run(message: Any, request_headers: dict[str, str], ascii_only: bool, audited: bool) -> None:
        fuzzer.check(encode(message, ascii_only), request_headers, audited)

    run()
    fuzzer.report(capsys, 'messages on sqlite, standard-library JSON')
    assert fuzzer.examples >= STDLIB_EXAMPLES // 2


@pytest.mark.parametrize('dialect', ['sqlite', 'postgresql'])
@pytest.mark.parametrize('audited', [False, True])
@pytest.mark.parametrize('raw', ['"\\ud800"', '"a\\udfffb"', '"\\udc00\\ud800"'])
def test_lone_surrogates_are_400_with_either_json_library(
    fuzzer: Fuzzer, raw: str, audited: bool, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """orjson refuses them while parsing; the standard library must not let them reach the database or the log."""
    for position in ('ids', 'name'):
        form = f'{{"id": 1, "name": {raw}}}' if position == 'name' else f'{{"ids": [{raw}]}}'
        action = 'rename' if position == 'name' else 'bump'
        body = f'{{"name": "execute_action", "params": {{"name": "{action}", "params": {form}}}}}'.encode()
        for module in ('orjson', 'stdlib'):
            if module == 'stdlib':
                monkeypatch.setattr(encoding, 'loads', encoding._std_loads)
                monkeypatch.setattr(encoding, 'dumps', encoding._std_dumps)
            fuzzer.check(body, dict(AUTH), audited)
    assert fuzzer.statuses == {400: 4}


@pytest.mark.parametrize('dialect', ['sqlite'])
@pytest.mark.parametrize('constant', ['Infinity', '-Infinity', 'NaN'])
def test_non_json_constants_the_standard_library_reads_are_4xx(stdlib_json: None, fuzzer: Fuzzer, constant: str) -> None:
    """The standard library parses NaN and Infinity; int(Infinity) raised OverflowError, a 500, in ``limit``."""
    for params in (f'{{"model": "accounts", "field": "owner_id", "limit": {constant}}}',
                   f'{{"model": "accounts", "field": "owner_id", "offset": {constant}}}',
                   f'{{"model": "accounts", "field": "owner_id", "after": {constant}}}'):
        fuzzer.check(f'{{"name": "get_field_options", "params": {params}}}'.encode(), dict(AUTH), False)
    for form in (f'{{"ids": [{constant}]}}', f'{{"ids": [1], "by": {constant}}}'):
        body = f'{{"name": "execute_action", "params": {{"name": "bump", "params": {form}}}}}'.encode()
        fuzzer.check(body, dict(AUTH), True)
    assert fuzzer.statuses == {400: 5}


@pytest.mark.parametrize('name', ['n' * 101, 'n' * 5000])
def test_a_value_the_database_refuses_is_4xx_and_writes_nothing(fuzzer: Fuzzer, dialect: str, name: str) -> None:
    """users.name is VARCHAR(100): PostgreSQL and MariaDB refuse longer names; SQLite stores them."""
    body = encode({'name': 'execute_action', 'params': {'name': 'rename', 'params': {'id': 1, 'name': name}}}, True)
    for audited in (False, True):
        fuzzer.check(body, dict(AUTH), audited)
    if dialect == 'sqlite':
        assert fuzzer.statuses == {200: 2}
    else:
        assert fuzzer.statuses == {400: 2}, 'the database refused the value: a client error, not a 500'
        assert fuzzer.runs.names == ['rename', 'rename']  # the action ran; its write was rolled back


def test_raw_bodies_that_are_not_json_get_4xx_json(
    fuzzer: Fuzzer, dialect: str, capsys: pytest.CaptureFixture[str],
) -> None:
    @fuzz_settings(RAW_EXAMPLES[dialect])
    @given(body=raw_bodies, audited=st.booleans())
    def run(body: bytes, audited: bool) -> None:
        fuzzer.check(body, dict(AUTH), audited)

    run()
    fuzzer.report(capsys, f'raw bodies on {dialect}')
    assert fuzzer.examples >= RAW_EXAMPLES[dialect] // 2
    assert fuzzer.statuses[400] > 0


POSITIONS: dict[str, Callable[[str], Any]] = {
    'body': lambda deep: deep,
    'name': lambda deep: {'name': deep},
    'params': lambda deep: {'name': 'execute_action', 'params': deep},
    'params.name': lambda deep: {'name': 'execute_action', 'params': {'name': deep}},
    'params.model': lambda deep: {'name': 'execute_action', 'params': {'name': 'note', 'model': deep}},
    'params.params': lambda deep: {'name': 'execute_action', 'params': {'name': 'configure', 'params': deep}},
    'form value': lambda deep: {'name': 'execute_action', 'params': {'name': 'configure', 'params': {'settings': {'x': deep}}}},
    'ids': lambda deep: {'name': 'execute_action', 'params': {'name': 'bump', 'params': {'ids': [1, deep]}}},
    'id': lambda deep: {'name': 'execute_action', 'params': {'name': 'rename', 'params': {'id': deep, 'name': 'x'}}},
    'form': lambda deep: {'name': 'get_field_options', 'params': {'model': 'accounts', 'field': 'owner_id', 'form': deep}},
    'q': lambda deep: {'name': 'get_field_options', 'params': {'model': 'accounts', 'field': 'owner_id', 'q': deep}},
    'after': lambda deep: {'name': 'get_field_options', 'params': {'model': 'accounts', 'field': 'owner_id', 'after': deep}},
    'limit': lambda deep: {'name': 'list_records', 'params': {'model': 'users', 'limit': deep}},
}


@pytest.mark.parametrize('position', sorted(POSITIONS))
@pytest.mark.parametrize('dialect', ['sqlite'])
def test_nesting_past_every_limit_at_every_position(fuzzer: Fuzzer, position: str) -> None:
    """Each depth around the limits of orjson (255 out, 1024 in) and of Python's recursion (1000)."""
    for depth in (*DEPTHS, 100_000):
        for kind in 'lo':
            for audited in (False, True):
                fuzzer.check(encode(POSITIONS[position](_deep(depth, kind)), True), dict(AUTH), audited)
    assert fuzzer.examples == (len(DEPTHS) + 1) * 4
    assert fuzzer.statuses[200] + sum(fuzzer.statuses[s] for s in range(400, 500)) == fuzzer.examples
