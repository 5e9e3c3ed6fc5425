"""``GET /api/health``, and the structured log lines: one per run and per error, never a credential."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from falcon import testing
from sqlalchemy.orm import Session

from jet_sqla import ActionError, Bridge, logs

from . import models
from .apps.cli_server import free_port
from .conftest import TOKEN, Client
from .models import User


class TestHealth:
    def test_ok_without_authentication(self, bridge: Bridge) -> None:
        result = testing.TestClient(bridge.wsgi_app()).simulate_get('/api/health')
        assert result.status_code == 200
        assert result.json == {'status': 'ok'}
        assert result.headers['content-type'].startswith('application/json')

    @pytest.mark.parametrize('url', [
        'postgresql+psycopg://postgres@127.0.0.1:{port}/nowhere',
        'mysql+pymysql://root@127.0.0.1:{port}/nowhere',
        'sqlite:////nonexistent-directory/{port}/shop.db',
    ])
    def test_503_when_the_database_cannot_be_reached(self, url: str, caplog: pytest.LogCaptureFixture) -> None:
        connect_args = {} if url.startswith('sqlite') else {'connect_timeout': 3}
        engine = sa.create_engine(url.format(port=free_port()), connect_args=connect_args)
        bridge = Bridge(models.Base, engine=engine, token=TOKEN)
        started = time.monotonic()
        result = testing.TestClient(bridge.wsgi_app()).simulate_get('/api/health')
        assert result.status_code == 503
        assert result.json == {'status': 'unavailable', 'database': 'unreachable'}
        assert time.monotonic() - started < 10
        [record] = [r for r in caplog.records if r.name == 'jet_sqla.http']
        assert record.levelno == logging.WARNING and 'database unavailable' in record.getMessage()

    def test_other_methods_get_json_405(self, bridge: Bridge) -> None:
        result = testing.TestClient(bridge.wsgi_app()).simulate_post('/api/health')
        assert result.status_code == 405
        assert result.json['error_code'] == 'method_not_allowed' and 'POST /api/health' in result.json['detail']


def kv(record: logging.LogRecord) -> str:
    return logs.KeyValueFormatter().format(record)


def as_json(record: logging.LogRecord) -> dict[str, Any]:
    line = logs.JSONFormatter().format(record)
    assert '\n' not in line
    decoded: dict[str, Any] = json.loads(line)
    return decoded


class TestActionLogLines:
    @pytest.fixture
    def client(self, bridge: Bridge, engine: sa.Engine) -> Client:
        with Session(engine) as session, session.begin():
            session.add(User(id=1, name='Ada'))

        @bridge.action(model=User, for_instance=True)
        def rename(user: User, name: str) -> None:
            if name == 'bad':
                raise ActionError('Refused')
            user.name = name

        return Client(bridge)

    def records(self, caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
        return [record for record in caplog.records if record.getMessage() == message]

    def test_one_line_per_run_with_its_fields(self, client: Client, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.INFO, logger='jet_sqla'):
            assert client.execute('rename', 'users', ids='1', name='Grace').status_code == 200
        [record] = self.records(caplog, 'action ran')
        line = kv(record)
        assert '\n' not in line
        for part in ('level=info', 'logger=jet_sqla.actions', 'msg="action ran"', 'action=rename',
                     'collection=users', 'ids=1', 'outcome=success', 'duration_ms='):
            assert part in line, line
        fields = as_json(record)
        assert (fields['action'], fields['outcome'], fields['ids']) == ('rename', 'success', 1)
        assert isinstance(fields['duration_ms'], float)

    def test_one_line_per_error_with_its_code(self, client: Client, caplog: pytest.LogCaptureFixture) -> None:
        with caplog.at_level(logging.INFO, logger='jet_sqla'):
            assert client.execute('rename', 'users', ids='1', name='bad').status_code == 400
            assert client.execute('rename', 'users', ids='1').status_code == 400
        first, second = self.records(caplog, 'action failed')
        assert (as_json(first)['outcome'], as_json(first)['code']) == ('error', 'action_error')
        assert (as_json(second)['outcome'], as_json(second)['code']) == ('rejected', 'invalid_params')
        assert self.records(caplog, 'action ran') == []


class TestNoCredentialInLogs:
    def test_tokens_never_reach_a_log_record(self, make_bridge: Callable[..., Bridge], engine: sa.Engine,
                                             caplog: pytest.LogCaptureFixture) -> None:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        bridge = make_bridge(jwt_public_key=public_pem, project='shop')
        with Session(engine) as session, session.begin():
            session.add(User(id=1, name='Ada'))

        @bridge.action(model=User, for_instance=True)
        def rename(user: User, name: str, password: str = '') -> None:
            if name == 'crash':
                raise RuntimeError('boom')
            user.name = name

        good_jwt = jwt.encode({'user': 1, 'projects': {'shop': {}}, 'exp': int(time.time()) + 60}, private, 'RS256')
        expired_jwt = jwt.encode({'user': 1, 'projects': {'shop': {}}, 'exp': 1}, private, 'RS256')
        wrong_token = 'wrong-token-Zq81'
        headers = [
            {'Authorization': f'Bearer {TOKEN}'},
            {'Authorization': f'Token {TOKEN}'},
            {'Authorization': f'Bearer {wrong_token}'},
            {'Authorization': f'JWT {good_jwt}'},
            {'Authorization': f'JWT {expired_jwt}'},
            {'Authorization': f'JWT {good_jwt[:-4]}AAAA'},
            {},
        ]
        with caplog.at_level(logging.DEBUG):
            for header in headers:
                client = Client(bridge, headers=header)
                client.message('get_action_list')
                client.execute('rename', 'users', ids='1', name='Grace', password='pw-hunter2')
                client.execute('rename', 'users', ids='1', name='crash', password='pw-hunter2')
        statuses = {record.getMessage() for record in caplog.records}
        assert {'action ran', 'action failed'} <= statuses  # the runs were logged…
        secrets = [TOKEN, wrong_token, good_jwt, expired_jwt, good_jwt.split('.')[2], 'pw-hunter2']
        for record in caplog.records:  # …and nothing carried a credential, in any form
            rendered = ' '.join([kv(record), json.dumps(as_json(record)), repr(vars(record))])
            leaked = [secret for secret in secrets if secret in rendered]
            assert not leaked, (leaked, rendered)


class TestFormatters:
    def record(self, message: str = 'hello %s', args: Any = ('world',), **extra: Any) -> logging.LogRecord:
        record = logging.LogRecord('jet_sqla.test', logging.WARNING, __file__, 1, message, args, None)
        record.__dict__.update(extra)
        return record

    def test_values_that_need_quoting_stay_on_one_line(self) -> None:
        line = kv(self.record(note='two words', quote='say "hi"', multi='a\nb', empty='', flag=True, nothing=None))
        assert line.split(' ', 1)[1] == (
            'level=warning logger=jet_sqla.test pid=' + str(self.record().process) + ' msg="hello world" '
            'note="two words" quote="say \\"hi\\"" multi="a\\nb" empty="" flag=true nothing=null'
        )

    def test_a_traceback_is_one_escaped_field(self) -> None:
        try:
            raise ValueError('broken')
        except ValueError:
            record = logging.LogRecord('x', logging.ERROR, __file__, 1, 'failed', (), sys.exc_info())
        line = kv(record)
        assert '\n' not in line and 'exc="Traceback' in line and 'ValueError: broken' in line
        assert 'ValueError: broken' in as_json(record)['exc']

    def test_hidden_secrets_are_replaced(self) -> None:
        logs.hide(['s3cret-token-1'])
        try:
            line = kv(self.record('user code logged %s', ('Bearer s3cret-token-1',)))
            assert 's3cret-token-1' not in line and logs.REDACTED in line
        finally:
            logs.hide([])
        assert 's3cret-token-1' in kv(self.record('%s', ('s3cret-token-1',)))

    def test_unknown_format_is_refused(self) -> None:
        with pytest.raises(ValueError, match='kv, json'):
            logs.logging_config('xml')

    def test_access_lines_are_off_by_default_and_follow_the_level_when_on(self) -> None:
        def access_level(**kwargs: Any) -> int:
            name = logs.logging_config('kv', **kwargs)['loggers']['gunicorn.access']['level']
            return int(logging.getLevelName(name))

        assert access_level(level='info') > logging.INFO  # off: gunicorn writes them at info
        assert access_level(level='debug') > logging.INFO
        assert access_level(level='info', access_log=True) == logging.INFO
        assert access_level(level='warning', access_log=True) == logging.WARNING  # --log-level warning hides them

    def test_configure_routes_gunicorn_through_the_same_handler(self, tmp_path: Path) -> None:
        config = logs.logging_config('json', 'warning')
        assert config['root']['level'] == 'WARNING'
        assert config['loggers']['gunicorn.error'] == {'level': 'WARNING', 'handlers': [], 'propagate': True}
        assert config['formatters']['structured']['()'] == 'jet_sqla.logs.JSONFormatter'
