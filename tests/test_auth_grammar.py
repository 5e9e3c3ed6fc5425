"""The reference bridge's Authorization grammar: several credentials, ``Scheme value[;key=value]...``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from falcon import testing

from jet_sqla import Bridge
from jet_sqla.auth import MAX_CREDENTIALS, Authenticator, parse_credentials
from jet_sqla.errors import Unauthorized

from .conftest import TOKEN
from .test_auth_attacks import JET_PUBLIC_PEM, PROJECT, claims, signed

OTHER = 'the-other-token'


@pytest.fixture(scope='module')
def both() -> Authenticator:
    return Authenticator([TOKEN, OTHER], jwt_public_key=JET_PUBLIC_PEM, project=PROJECT)


@pytest.fixture(scope='module')
def tokens_only() -> Authenticator:
    return Authenticator([TOKEN])


def test_parse_credentials_reads_schemes_values_and_drops_suffixes() -> None:
    assert parse_credentials('Token abc;env=prod;x=1, JWT e.y.j') == [('token', 'abc'), ('jwt', 'e.y.j')]
    assert parse_credentials('PROJECTTOKEN  v') == [('projecttoken', ' v')]  # the value is exact: no trimming
    assert parse_credentials('Bearer a,,  , Bearer b,') == [('bearer', 'a'), ('bearer', 'b')]


@pytest.mark.parametrize('scheme', ['Bearer', 'bearer', 'BEARER', 'Token', 'token', 'ProjectToken', 'projecttoken',
                                    'PROJECTTOKEN'])
def test_shared_token_schemes_in_any_case(tokens_only: Authenticator, scheme: str) -> None:
    assert tokens_only.authenticate(f'{scheme} {TOKEN}').actor is None
    with pytest.raises(Unauthorized):
        tokens_only.authenticate(f'{scheme} wrong')


@pytest.mark.parametrize('value', [f' {TOKEN}', f'{TOKEN} ', f'{TOKEN}\x00', f'{TOKEN}\t', f'\t{TOKEN}', TOKEN.upper()])
def test_a_lone_bearer_value_is_taken_exactly(tokens_only: Authenticator, both: Authenticator, value: str) -> None:
    """``Bearer <value>`` alone, the shape Jet Admin sends, has a shorter path: it reads the value as exactly as
    parse_credentials does, so whitespace, a NUL or another case around the secret still never matches."""
    assert parse_credentials(f'Bearer {value}') == [('bearer', value)]
    for authenticator in (tokens_only, both):
        with pytest.raises(Unauthorized, match='Invalid token'):
            authenticator.authenticate(f'Bearer {value}')
    assert both.authenticate(f'Bearer {OTHER}').actor is None  # every configured token is tried
    jwt_only = Authenticator([], jwt_public_key=JET_PUBLIC_PEM, project=PROJECT)
    with pytest.raises(Unauthorized, match='Unsupported'):  # no shared token: the scheme is what is refused
        jwt_only.authenticate(f'Bearer {TOKEN}')


@pytest.mark.parametrize('suffix', [';env=prod', ';a=b;c=d', ';', ';' + 'x' * 200])
def test_the_suffix_is_never_part_of_the_secret(tokens_only: Authenticator, suffix: str) -> None:
    assert tokens_only.authenticate(f'ProjectToken {TOKEN}{suffix}').actor is None
    with pytest.raises(Unauthorized):
        tokens_only.authenticate(f'Bearer {TOKEN[:-1]}{suffix}')  # nor does it complete one


def test_jwt_is_preferred_wherever_it_stands(both: Authenticator) -> None:
    token = signed(claims())
    for header in (f'Token {TOKEN}, JWT {token}', f'JWT {token};env=x, Bearer {TOKEN}', f'jwt {token}'):
        identity = both.authenticate(header)
        assert identity.actor is not None and identity.actor['user'] == 7
    with pytest.raises(Unauthorized):  # a bad JWT is not rescued by a good shared token beside it
        both.authenticate(f'Bearer {TOKEN}, JWT not.a.jwt')


def test_without_a_jwt_key_the_first_known_scheme_is_checked(tokens_only: Authenticator) -> None:
    assert tokens_only.authenticate(f'JWT some.jwt.here, Token {TOKEN}').actor is None
    assert tokens_only.authenticate(f'Basic dXNlcg==, Digest x, Bearer {TOKEN}').actor is None
    with pytest.raises(Unauthorized, match='Unsupported'):
        tokens_only.authenticate('Basic dXNlcg==, Digest x')
    with pytest.raises(Unauthorized, match='Unsupported'):
        tokens_only.authenticate('JWT some.jwt.here')


@pytest.mark.parametrize('header', [
    f'Bearer {TOKEN}, Bearer wrong',      # two headers joined by a server, ours first
    f'Bearer wrong, Bearer {TOKEN}',
    f'Token {TOKEN}, ProjectToken {OTHER}',  # two shared secrets: which one vouches?
    f'JWT a.b.c, JWT {"x" * 20}',
])
def test_two_credentials_of_one_kind_are_refused(both: Authenticator, header: str) -> None:
    with pytest.raises(Unauthorized, match='Several credentials'):
        both.authenticate(header)


@pytest.mark.parametrize('header', [
    ',', ', ,', ' , , ',                    # empty parts only
    'Bearer', 'Bearer ', f'Bearer ;{TOKEN}',  # a scheme with no value (a suffix is not a value)
    f'Bearer {TOKEN}, Token',               # one good credential does not excuse a malformed one
    f' {TOKEN}', f'{TOKEN}',                 # no scheme
])
def test_empty_parts_and_missing_values_are_refused(tokens_only: Authenticator, header: str) -> None:
    with pytest.raises(Unauthorized) as refused:
        tokens_only.authenticate(header)
    assert TOKEN not in refused.value.message


def test_empty_parts_around_a_credential_are_skipped(tokens_only: Authenticator) -> None:
    assert tokens_only.authenticate(f', Bearer {TOKEN}, ,').actor is None


@pytest.mark.parametrize('header', [
    'Bearer ' + 'a' * 10 * 1024,
    f'Bearer {TOKEN}' + ';k=v' * 2600,
    ', ' * 5 * 1024,
    'Bearer x,' * 1200,
    f'Basic {"b" * 10_240}, Bearer {TOKEN}',
])
def test_a_10_kib_header_is_answered_quickly_and_refused_or_read_exactly(tokens_only: Authenticator, header: str) -> None:
    assert len(header) >= 10 * 1024
    if header.startswith((f'Bearer {TOKEN};', 'Basic')):
        assert tokens_only.authenticate(header).actor is None  # the secret is found, the rest ignored
    else:
        with pytest.raises(Unauthorized) as refused:
            tokens_only.authenticate(header)
        assert len(refused.value.message) < 200


def test_more_credentials_than_the_limit_are_refused(tokens_only: Authenticator) -> None:
    header = ', '.join(['Digest x'] * MAX_CREDENTIALS + [f'Bearer {TOKEN}'])
    with pytest.raises(Unauthorized, match='Too many'):
        tokens_only.authenticate(header)
    assert tokens_only.authenticate(', '.join(['Digest x'] * (MAX_CREDENTIALS - 1) + [f'Bearer {TOKEN}'])).actor is None


@pytest.mark.parametrize('token', ['has space', 'has,comma', 'has;semicolon', 'tab\there', 'nul\x00'])
def test_a_token_the_header_could_never_carry_is_refused_at_configuration(token: str) -> None:
    with pytest.raises(ValueError, match='may not hold'):
        Authenticator([token])


@pytest.mark.parametrize('dialect', ['sqlite'])
def test_the_grammar_through_the_app(make_bridge: Callable[..., Bridge], engine: sa.Engine) -> None:
    bridge = make_bridge(jwt_public_key=JET_PUBLIC_PEM, project=PROJECT)
    client = testing.TestClient(bridge.wsgi_app())
    body = {'name': 'get_action_list'}
    for header, status in ((f'ProjectToken {TOKEN};env=prod', 200), (f'token {TOKEN}, jwt {signed(claims())}', 200),
                           (f'Bearer {TOKEN}, Bearer {TOKEN}', 401), (',,', 401), ('Bearer ' + 'a' * 10240, 401)):
        result = client.simulate_post('/api/messages/', json=body, headers={'Authorization': header})
        assert result.status_code == status, (header[:40], result.text)
        if status == 401:
            assert result.json['error_code'] == 'unauthorized' and TOKEN not in result.text
            assert 'ProjectToken' in result.headers['www-authenticate']
