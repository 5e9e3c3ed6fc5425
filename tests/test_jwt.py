"""Jet Admin's ``Authorization: JWT <token>``: RS256 with keys the tests generate, the project claim, read-only users,
per-action ``allow=``, and the actor in the action's context and in the audit log."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.orm import Session

from jet_sqla import ActionContext, Bridge, migrations
from jet_sqla.audit import action_log

from . import models
from .conftest import AUTH, TOKEN, Client
from .models import Tier, User

PROJECT = 'shop'
Actor = dict[str, Any] | None


class Keys:
    """An RSA key pair in PEM, and a signer for tokens."""

    def __init__(self) -> None:
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def token(self, claims: dict[str, Any] | None = None, *, expires_in: float = 300, **grant: Any) -> str:
        """A token for user 7 granting ``PROJECT`` (with ``grant`` in its entry), unless ``claims`` says otherwise."""
        payload: dict[str, Any] = {'user': 7, 'projects': {PROJECT: grant or {'owner': True}},
                                   'exp': int(time.time() + expires_in)}
        payload.update(claims or {})
        return jwt.encode(payload, self.private, algorithm='RS256')


@pytest.fixture(scope='module')
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope='module')
def other_keys() -> Keys:
    return Keys()


def as_jwt(token: str) -> dict[str, str]:
    return {'Authorization': f'JWT {token}'}


@pytest.fixture
def seen() -> list[Actor]:
    """The actor each run of ``promote`` saw in its ActionContext."""
    return []


@pytest.fixture
def jwt_bridge(make_bridge: Callable[..., Bridge], engine: sa.Engine, keys: Keys, seen: list[Actor]) -> Bridge:
    """JWT and a shared token together; ``promote`` for anyone, ``purge`` for user 1 only."""
    with Session(engine) as session, session.begin():
        session.add(User(id=1, name='Ada'))
    bridge = make_bridge(jwt_public_key=keys.public_pem, project=PROJECT)

    @bridge.action(model=User, for_instance=True)
    def promote(user: User, ctx: ActionContext) -> None:
        seen.append(ctx.actor)
        user.tier = Tier.GOLD

    @bridge.action(allow=lambda actor: actor is not None and actor.get('user') == 1)
    def purge() -> dict[str, str]:
        return {'purged': 'everything'}

    return bridge


def tier(engine: sa.Engine) -> Tier:
    with Session(engine) as session:
        return session.get_one(User, 1).tier


class TestVerification:
    def test_a_valid_token_runs_and_its_claims_are_the_actor(self, jwt_bridge: Bridge, keys: Keys,
                                                             seen: list[Actor], engine: sa.Engine) -> None:
        client = Client(jwt_bridge, headers=as_jwt(keys.token()))
        assert client.message('get_action_list').status_code == 200
        result = client.execute('promote', 'users', ids='1')
        assert result.status_code == 200, result.text
        assert result.json == {'result': True}
        assert tier(engine) is Tier.GOLD
        [actor] = seen
        assert actor is not None and actor['user'] == 7 and actor['projects'] == {PROJECT: {'owner': True}}

    @pytest.mark.parametrize('case, description', [
        ('expired', 'The JWT has expired'),
        ('forged', 'Invalid JWT: InvalidSignatureError'),
        ('no_exp', 'Invalid JWT: MissingRequiredClaimError'),
        ('garbage', 'Invalid JWT: DecodeError'),
        ('hs256', 'Invalid JWT: InvalidAlgorithmError'),
        ('none', 'Invalid JWT: InvalidAlgorithmError'),
    ])
    def test_a_token_that_does_not_verify_is_401(self, jwt_bridge: Bridge, keys: Keys, other_keys: Keys,
                                                 engine: sa.Engine, case: str, description: str) -> None:
        claims = {'user': 7, 'projects': {PROJECT: {'owner': True}}, 'exp': int(time.time() + 300)}
        token = {
            'expired': lambda: keys.token(expires_in=-3600),
            'forged': lambda: other_keys.token(),  # a valid token, signed by someone else's key
            'no_exp': lambda: jwt.encode({k: v for k, v in claims.items() if k != 'exp'}, keys.private, 'RS256'),
            'garbage': lambda: 'not.a.token',
            # Algorithm confusion: the public key used as an HMAC secret must not verify.
            'hs256': lambda: _hmac_token(claims, keys.public_pem),
            'none': lambda: jwt.encode(claims, None, algorithm='none'),
        }[case]()
        result = Client(jwt_bridge, headers=as_jwt(token)).execute('promote', 'users', ids='1')
        assert result.status_code == 401
        assert result.json == {'type': 'about:blank', 'title': 'Unauthorized', 'status': 401, 'detail': description, 'code': 'unauthorized'}
        assert token not in result.text
        assert tier(engine) is Tier.BRONZE

    def test_a_token_for_another_project_is_403(self, jwt_bridge: Bridge, keys: Keys) -> None:
        token = keys.token({'projects': {'other': {'owner': True}}})
        client = Client(jwt_bridge, headers=as_jwt(token))
        for result in (client.message('get_action_list'), client.execute('promote', 'users', ids='1')):
            assert result.status_code == 403
            assert result.json == {'type': 'about:blank', 'title': 'Forbidden', 'status': 403, 'code': 'forbidden',
                                   'detail': 'The JWT does not grant access to this project'}

    def test_jwt_is_refused_where_no_key_is_configured(self, make_bridge: Callable[..., Bridge], keys: Keys) -> None:
        result = Client(make_bridge(), headers=as_jwt(keys.token())).message('get_action_list')
        assert result.status_code == 401
        assert result.json['code'] == 'unauthorized' and 'jwt' in result.json['detail'].lower()


def _hmac_token(claims: dict[str, Any], secret: str) -> str:
    # PyJWT refuses to sign with a PEM as HMAC secret; build the token by hand, as an attacker would.
    import base64
    import hashlib
    import hmac

    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b'=').decode()

    header = part(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())
    body = part(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f'{header}.{body}'.encode(), hashlib.sha256).digest()
    return f'{header}.{body}.{part(signature)}'


class TestPermissions:
    def test_read_only_users_may_look_but_not_run(self, jwt_bridge: Bridge, keys: Keys, engine: sa.Engine,
                                                  seen: list[Actor]) -> None:
        client = Client(jwt_bridge, headers=as_jwt(keys.token(read_only=True)))
        listed = client.message('get_action_list')
        assert listed.status_code == 200 and {a['name'] for a in listed.json} == {'promote', 'purge'}
        options = client.message('get_field_options', {'model': 'users', 'field': 'tier'})
        assert options.status_code == 200 and [o['value'] for o in options.json] == ['BRONZE', 'GOLD']
        result = client.execute('promote', 'users', ids='1')
        assert result.status_code == 403
        assert result.json == {'type': 'about:blank', 'title': 'Forbidden', 'status': 403, 'code': 'forbidden',
                               'detail': 'Read-only users may not execute actions'}
        assert seen == [] and tier(engine) is Tier.BRONZE

    @pytest.mark.parametrize('grant', [{'read_only': False}, {'permissions': []}, {'owner': True}])
    def test_only_read_only_true_means_read_only(self, jwt_bridge: Bridge, keys: Keys, grant: dict[str, Any]) -> None:
        result = Client(jwt_bridge, headers=as_jwt(keys.token(**grant))).execute('promote', 'users', ids='1')
        assert result.status_code == 200, result.text

    def test_allow_receives_the_actor(self, jwt_bridge: Bridge, keys: Keys) -> None:
        allowed = Client(jwt_bridge, headers=as_jwt(keys.token({'user': 1}))).execute('purge')
        assert allowed.status_code == 200 and allowed.json == {'result': True, 'purged': 'everything'}
        refused = Client(jwt_bridge, headers=as_jwt(keys.token({'user': 2}))).execute('purge')
        assert refused.status_code == 403
        assert refused.json == {'type': 'about:blank', 'title': 'Forbidden', 'status': 403, 'code': 'forbidden', 'detail': "You may not run 'purge'"}

    def test_a_shared_token_request_has_no_actor(self, jwt_bridge: Bridge, seen: list[Actor]) -> None:
        client = Client(jwt_bridge, headers=AUTH)  # the shared token works next to the JWT key
        assert client.execute('promote', 'users', ids='1').status_code == 200
        assert seen == [None]
        refused = client.execute('purge')  # allow() got None
        assert refused.status_code == 403 and refused.json['code'] == 'forbidden'

    def test_allow_sees_exactly_what_the_token_carried(self, make_bridge: Callable[..., Bridge], keys: Keys) -> None:
        received: list[Actor] = []
        bridge = make_bridge(jwt_public_key=keys.public_pem, project=PROJECT)

        @bridge.action(allow=lambda actor: received.append(actor) or True)
        def ping() -> None: ...

        token = keys.token({'user': 3, 'email': 'grace@example.com'})
        assert Client(bridge, headers=as_jwt(token)).execute('ping').status_code == 200
        assert Client(bridge, headers=AUTH).execute('ping').status_code == 200
        assert received == [jwt.decode(token, keys.public_pem, algorithms=['RS256']), None]


class TestConfiguration:
    def test_key_and_project_from_the_environment(self, engine: sa.Engine, keys: Keys,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv('JET_SQLA_TOKEN', raising=False)
        monkeypatch.setenv('JET_SQLA_JWT_PUBLIC_KEY', keys.public_pem)
        monkeypatch.setenv('JET_SQLA_PROJECT', PROJECT)
        bridge = Bridge(models.Base, engine=engine)  # JWT only: no shared token at all
        assert Client(bridge, headers=as_jwt(keys.token())).message('get_action_list').status_code == 200
        refused = Client(bridge, headers=AUTH).message('get_action_list')
        assert refused.status_code == 401 and 'send "JWT <token>"' in refused.json['detail']

    def test_key_from_a_file_path(self, engine: sa.Engine, keys: Keys, tmp_path: Path) -> None:
        path = tmp_path / 'jet.pub'
        path.write_text(keys.public_pem)
        bridge = Bridge(models.Base, engine=engine, jwt_public_key=str(path), project=PROJECT)
        assert Client(bridge, headers=as_jwt(keys.token())).message('get_action_list').status_code == 200

    def test_a_key_needs_a_project(self, engine: sa.Engine, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv('JET_SQLA_PROJECT', raising=False)
        with pytest.raises(ValueError, match='needs project='):
            Bridge(models.Base, engine=engine, token=TOKEN, jwt_public_key=keys.public_pem)


def test_the_actor_is_in_the_audit_log(make_bridge: Callable[..., Bridge], engine: sa.Engine, keys: Keys) -> None:
    migrations.upgrade(engine)
    with Session(engine) as session, session.begin():
        session.add(User(id=1, name='Ada'))
    bridge = make_bridge(jwt_public_key=keys.public_pem, project=PROJECT, audit=True)

    @bridge.action(model=User, for_instance=True)
    def promote(user: User) -> None:
        user.tier = Tier.GOLD

    token = keys.token({'user': 11})
    assert Client(bridge, headers=as_jwt(token)).execute('promote', 'users', ids='1').status_code == 200
    with engine.connect() as connection:
        stored = connection.execute(sa.select(action_log.c.actor)).scalar_one()
    assert json.loads(stored) == jwt.decode(token, keys.public_pem, algorithms=['RS256'])
    assert token not in stored  # the claims, never the credential
