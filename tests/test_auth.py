"""Shared-token authentication, and refusing to run without any authentication."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import sqlalchemy as sa

from jet_sqla import Bridge, logs

from . import models
from .conftest import Client


@pytest.fixture
def two_token_bridge(engine: sa.Engine) -> Bridge:
    bridge = Bridge(models.Base, engine=engine, token=['s3cret', 'rotated-s3cret'])

    @bridge.action()
    def ping() -> None: ...

    return bridge


@pytest.mark.parametrize('header', ['Bearer s3cret', 'Token s3cret', 'bearer rotated-s3cret', 'TOKEN rotated-s3cret'])
def test_bearer_and_token_schemes_with_any_configured_token(two_token_bridge: Bridge, header: str) -> None:
    client = Client(two_token_bridge, headers={'Authorization': header})
    assert client.message('get_action_list').status_code == 200
    assert client.execute('ping').json == {'result': True}


@pytest.mark.parametrize('header', ['Bearer wrong', 'Bearer s3cre', 'Bearer s3cretX', 'Basic s3cret', 'Bearer',
                                    's3cret', 'JWT s3cret'])
def test_anything_else_is_401_json_that_never_echoes_a_secret(two_token_bridge: Bridge, header: str) -> None:
    result = Client(two_token_bridge, headers={'Authorization': header}).message('get_action_list')
    assert result.status_code == 401
    assert result.json['code'] == 'unauthorized'
    assert 's3cret' not in result.text


def test_no_authentication_configured_refuses_to_build(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv('JET_SQLA_TOKEN', raising=False)
    monkeypatch.delenv('JET_SQLA_JWT_PUBLIC_KEY', raising=False)
    with pytest.raises(ValueError, match='no authentication is configured'):
        Bridge(models.Base, engine=engine)
    with pytest.raises(ValueError, match='empty token'):
        Bridge(models.Base, engine=engine, token='')


def test_insecure_runs_without_auth_and_warns_loudly(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv('JET_SQLA_TOKEN', raising=False)
    with caplog.at_level(logging.WARNING):
        bridge = Bridge(models.Base, engine=engine, insecure=True)
        app_built = bridge.wsgi_app()
    assert app_built is not None
    warnings = [record for record in caplog.records if 'NO AUTHENTICATION' in record.getMessage()]
    # Once per process, though the bridge was both built and started; one line, readable as kv and as JSON.
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert '\n' not in warnings[0].getMessage() and '--token' in warnings[0].getMessage()
    assert Client(bridge, headers={}).message('get_action_list').status_code == 200


def test_token_from_the_environment(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('JET_SQLA_TOKEN', 'from-env, second ')
    bridge = Bridge(models.Base, engine=engine)
    for token, status in (('from-env', 200), ('second', 200), ('from-env, second', 401)):
        assert Client(bridge, headers={'Authorization': f'Bearer {token}'}).message('get_action_list').status_code == status


def test_explicit_token_wins_over_the_environment(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('JET_SQLA_TOKEN', 'from-env')
    bridge = Bridge(models.Base, engine=engine, token='explicit')
    assert Client(bridge, headers={'Authorization': 'Bearer from-env'}).message('get_action_list').status_code == 401
    assert Client(bridge, headers={'Authorization': 'Bearer explicit'}).message('get_action_list').status_code == 200


def test_every_message_needs_auth(two_token_bridge: Bridge) -> None:
    client = Client(two_token_bridge, headers={})
    for name, params in (('get_action_list', {}), ('execute_action', {'name': 'ping'}),
                         ('get_field_options', {'model': 'users', 'field': 'tier'}),
                         ('list_records', {'model': 'users'})):
        result: Any = client.message(name, params)
        assert result.status_code == 401, name


def test_insecure_from_the_environment(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv('JET_SQLA_TOKEN', raising=False)
    monkeypatch.setenv('JET_SQLA_INSECURE', '1')
    assert Client(Bridge(models.Base, engine=engine), headers={}).message('get_action_list').status_code == 200
    monkeypatch.setenv('JET_SQLA_INSECURE', '0')
    with pytest.raises(ValueError, match='no authentication is configured'):
        Bridge(models.Base, engine=engine)


@pytest.mark.parametrize('header', [None, 'Bearer wrong-guess-9d2e', 'Sup3rSecretScheme42 value', 'JWT not.a.jwt'])
def test_a_refused_credential_is_logged_with_where_it_came_from_never_what_it_was(
        two_token_bridge: Bridge, caplog: pytest.LogCaptureFixture, header: str | None) -> None:
    """With access lines off by default, this line is the record of someone trying tokens."""
    client = Client(two_token_bridge, headers={} if header is None else {'Authorization': header})
    with caplog.at_level(logging.INFO, logger='jet_sqla.auth'):
        assert client.message('get_action_list').status_code == 401
    refused = [record for record in caplog.records if record.getMessage() == 'authentication refused']
    assert [(record.name, record.levelno, record.method, record.path, record.remote)  # type: ignore[attr-defined]
            for record in refused] == [('jet_sqla.auth', logging.INFO, 'POST', '/api/messages/', '127.0.0.1')]
    written = logs.KeyValueFormatter().format(refused[0]) + logs.JSONFormatter().format(refused[0])
    for secret in ('s3cret', 'wrong-guess', 'Sup3rSecret', 'not.a.jwt'):
        assert secret not in written and secret not in caplog.text


def test_an_accepted_credential_or_another_refusal_logs_no_refused_credential(
        two_token_bridge: Bridge, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger='jet_sqla'):
        client = Client(two_token_bridge, headers={'Authorization': 'Bearer s3cret'})
        assert client.message('get_action_list').status_code == 200
        assert client.execute('no_such_action').status_code == 404
    assert [record for record in caplog.records if record.name == 'jet_sqla.auth'] == []
