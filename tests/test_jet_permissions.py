"""``Bridge(..., jet_permissions=True)``: Jet Admin's own permissions, from real RS256 JWTs."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from jet_sqla import Bridge
from jet_sqla.errors import Forbidden
from jet_sqla.permissions import decode_permissions

from .conftest import AUTH, Client
from .models import Counter, Tier, User
from .test_jwt import PROJECT, Keys, as_jwt


def packed(entries: Any) -> str:
    """``permissions`` as Jet Admin puts it in a grant: base64 of gzip-compressed JSON."""
    return base64.b64encode(gzip.compress(json.dumps(entries).encode())).decode()


def model_permission(collection: str, actions: str, resource: str = 'db') -> dict[str, str]:
    return {'permission_type': 'model', 'permission_object': f'{resource}.{collection}', 'permission_actions': actions}


@pytest.fixture(scope='module')
def keys() -> Keys:
    return Keys()


@pytest.fixture
def runs() -> list[str]:
    return []


@pytest.fixture
def guarded(make_bridge: Callable[..., Bridge], engine: sa.Engine, keys: Keys, runs: list[str]) -> Bridge:
    """jet_permissions on; ``promote`` on users, ``bump`` on counters, ``ping`` common, ``purge`` allowed for user 1."""
    with Session(engine) as session, session.begin():
        session.add(User(id=1, name='Ada'))
        session.add(Counter(id=1, value=0))
    bridge = make_bridge(jwt_public_key=keys.public_pem, project=PROJECT, jet_permissions=True)

    @bridge.action(model=User, for_instance=True)
    def promote(user: User) -> None:
        runs.append('promote')
        user.tier = Tier.GOLD

    @bridge.action(model=Counter, for_instance=True, bulk=True)
    def bump(counters: list[Counter]) -> None:
        runs.append('bump')

    @bridge.action()
    def ping() -> None:
        runs.append('ping')

    @bridge.action(model=User, allow=lambda actor: actor is not None and actor.get('user') == 1)
    def purge() -> None:
        runs.append('purge')

    return bridge


def run(bridge: Bridge, headers: dict[str, str], action: str, **params: Any) -> Any:
    return Client(bridge, headers=headers).message('execute_action', {'name': action, **params})


@pytest.mark.parametrize('dialect', ['sqlite'])
class TestJetPermissions:
    def test_owner_and_super_group_may_run_everything(self, guarded: Bridge, keys: Keys, runs: list[str]) -> None:
        for grant in ({'owner': True}, {'super_group': True}):
            headers = as_jwt(keys.token(**grant))
            assert run(guarded, headers, 'promote', id=1).status_code == 200
            assert run(guarded, headers, 'bump', ids=[1]).status_code == 200
            assert run(guarded, headers, 'ping').status_code == 200
        assert runs == ['promote', 'bump', 'ping'] * 2

    def test_write_permission_on_the_collection_is_needed(self, guarded: Bridge, keys: Keys, runs: list[str]) -> None:
        grant = {'permissions': packed([model_permission('users', 'rw'), model_permission('counters', 'r'),
                                        {'permission_type': 'project', 'permission_object': 'db.counters',
                                         'permission_actions': 'w'}])}
        headers = as_jwt(keys.token(**grant))
        assert run(guarded, headers, 'promote', id=1).status_code == 200
        refused = run(guarded, headers, 'bump', ids=[1])
        assert refused.status_code == 403
        assert refused.json['code'] == 'forbidden' and "'counters'" in refused.json['detail']
        assert runs == ['promote']

    def test_the_collection_is_what_follows_the_first_dot(self, guarded: Bridge, keys: Keys, runs: list[str]) -> None:
        for target, allowed in (('db.users', True), ('other_resource.users', True), ('users', False),
                                ('db.users.extra', False), ('db.user', False), ('a.b.users', False)):
            entry = {'permission_type': 'model', 'permission_object': target, 'permission_actions': 'w'}
            result = run(guarded, as_jwt(keys.token(permissions=packed([entry]))), 'promote', id=1)
            assert result.status_code == (200 if allowed else 403), (target, result.text)

    def test_no_permissions_at_all_is_a_403_naming_the_collection(self, guarded: Bridge, keys: Keys,
                                                                  runs: list[str]) -> None:
        result = run(guarded, as_jwt(keys.token(member=True)), 'promote', id=1)
        assert result.status_code == 403 and "'users'" in result.json['detail']
        jet = run(guarded, {**as_jwt(keys.token(member=True)), 'Accept': '*/*'}, 'promote', id=1)
        assert jet.json == {'detail': result.json['detail'], 'error': result.json['detail'], 'error_code': 'forbidden'}
        assert runs == []

    @pytest.mark.parametrize('permissions', ['not base64 at all!', base64.b64encode(b'not gzip').decode(),
                                             packed({'a': 'dict'}), packed(['not an object']), packed(None) + '!!',
                                             base64.b64encode(gzip.compress(b'\xff\xfe')).decode(), 12,
                                             base64.b64encode(gzip.compress(b'[' * 10 + b' ' * (2 * 1024 * 1024))).decode()])
    def test_permissions_that_do_not_decode_are_a_403_never_a_500(self, guarded: Bridge, keys: Keys,
                                                                  runs: list[str], permissions: Any) -> None:
        result = run(guarded, as_jwt(keys.token(permissions=permissions)), 'promote', id=1)
        assert result.status_code == 403, result.text
        assert 'cannot be read' in result.json['detail']
        assert runs == []

    def test_a_common_action_needs_a_grant_that_is_not_read_only(self, guarded: Bridge, keys: Keys,
                                                                 runs: list[str]) -> None:
        assert run(guarded, as_jwt(keys.token(member=True)), 'ping').status_code == 200
        # Even permissions that do not decode do not matter to a common action: it names no collection.
        assert run(guarded, as_jwt(keys.token(permissions='garbage')), 'ping').status_code == 200
        refused = run(guarded, as_jwt(keys.token(read_only=True)), 'ping')
        assert refused.status_code == 403 and 'Read-only' in refused.json['detail']
        assert runs == ['ping', 'ping']

    def test_shared_token_requests_are_not_affected(self, guarded: Bridge, runs: list[str]) -> None:
        assert run(guarded, AUTH, 'promote', id=1).status_code == 200
        assert run(guarded, AUTH, 'bump', ids=[1]).status_code == 200
        assert runs == ['promote', 'bump']

    def test_allow_still_applies_on_top(self, guarded: Bridge, keys: Keys, runs: list[str]) -> None:
        assert run(guarded, as_jwt(keys.token({'user': 1})), 'purge').status_code == 200
        assert run(guarded, as_jwt(keys.token({'user': 2})), 'purge').status_code == 403  # owner, but not allowed
        writer = {'user': 1, 'projects': {PROJECT: {'permissions': packed([model_permission('users', 'r')])}}}
        assert run(guarded, as_jwt(keys.token(writer)), 'purge').status_code == 403  # allowed, but may not write
        assert runs == ['purge']

    def test_off_by_default(self, make_bridge: Callable[..., Bridge], keys: Keys) -> None:
        bridge = make_bridge(jwt_public_key=keys.public_pem, project=PROJECT)

        @bridge.action(model=User)
        def touch() -> None: ...

        assert run(bridge, as_jwt(keys.token(member=True)), 'touch').status_code == 200


def test_jet_permissions_needs_a_jwt_key(make_bridge: Callable[..., Bridge]) -> None:
    with pytest.raises(ValueError, match='jet_permissions'):
        make_bridge(jet_permissions=True)


def test_decode_permissions_reads_jets_encoding() -> None:
    entries = [model_permission('orders', 'rwd')]
    assert decode_permissions(packed(entries)) == entries
    assert decode_permissions(packed(entries).rstrip('=')) == entries  # padding is optional
    assert decode_permissions(None) == [] and decode_permissions(entries) == entries
    with pytest.raises(Forbidden):
        decode_permissions({'not': 'a list'})
