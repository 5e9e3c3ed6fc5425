"""Who is asking: shared tokens, and Jet Admin's RS256 JWTs.

``Authorization: Bearer <token>``, ``Token <token>`` and ``ProjectToken <token>``
carry a shared secret, compared in constant time with every configured token.
``JWT <token>`` carries a token signed by Jet Admin; its claims become the
*actor*. Nothing here calls out to the network, and no credential is ever logged.

The header follows the reference bridge's grammar: several comma-separated
credentials, each ``Scheme value[;key=value]...``. Schemes match in any case;
``JWT`` is checked when present (and configured), otherwise the first
credential of a known scheme. The ``;...`` suffix is never part of the secret.
Two credentials of one kind (two JWTs, or two shared tokens) are refused rather
than guessed between: a server joins repeated ``Authorization`` headers with
commas, and one of them must not vouch for the other.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jwt

from .errors import Forbidden, Unauthorized

__all__ = ['MAX_CREDENTIALS', 'Authenticator', 'Identity', 'configured_public_key', 'configured_tokens', 'parse_credentials']

log = logging.getLogger(__name__)

_SHARED_SCHEMES = frozenset({'bearer', 'token', 'projecttoken'})
#: More credentials than this in one header is not a client, it is an attack on the parser.
MAX_CREDENTIALS = 8


class Identity:
    """An authenticated caller.

    Attributes:
        actor: The JWT's claims, or ``None`` for a shared token (or an insecure server).
        read_only: The JWT's project entry says ``read_only``; it may not execute actions.
        grant: The JWT's project entry (``owner``, ``permissions``…), or ``None``.
    """

    __slots__ = ('actor', 'grant', 'read_only')

    def __init__(self, actor: Mapping[str, Any] | None = None, read_only: bool = False,
                 grant: Mapping[str, Any] | None = None) -> None:
        self.actor = actor
        self.read_only = read_only
        self.grant = grant


_ANONYMOUS = Identity()


class Authenticator:
    """Checks the ``Authorization`` header.

    Args:
        tokens: Shared tokens; any of them is accepted (for rotation).
        jwt_public_key: The PEM public key Jet Admin signs JWTs with (RS256).
        project: The project a JWT must grant, under its ``projects`` claim.
        insecure: Accept every request; only for local development.

    Raises:
        ValueError: nothing is configured and ``insecure`` is false, or a JWT
            key is given without a project.
    """

    def __init__(
        self,
        tokens: Sequence[str] = (),
        *,
        jwt_public_key: str | bytes | None = None,
        project: str | None = None,
        insecure: bool = False,
    ) -> None:
        self._tokens = tuple(token.encode() for token in tokens if token)
        if len(self._tokens) != len(tokens):
            raise ValueError('an empty token would let anyone in; remove it')
        if any(not token.isprintable() or any(c in token for c in ' ,;') for token in tokens):
            raise ValueError('a token may not hold spaces, commas, semicolons or control characters: '
                             'the Authorization header could never carry it')
        self._jwt_key = jwt_public_key
        self._project = project
        if jwt_public_key is not None and not project:
            raise ValueError('jwt_public_key= needs project=: the project a token must grant')
        self.insecure = insecure and not self._tokens and jwt_public_key is None
        if not (self._tokens or jwt_public_key is not None or insecure):
            raise ValueError(
                'no authentication is configured: pass token= (or set JET_SQLA_TOKEN, or give '
                'jet-sqla serve --token), or jwt_public_key= and project=; insecure=True runs without any'
            )

    @property
    def configured(self) -> bool:
        return not self.insecure

    @property
    def accepts_jwt(self) -> bool:
        """A JWT key and project are configured."""
        return self._jwt_key is not None

    def authenticate(self, header: str | None) -> Identity:
        """The caller's identity.

        Raises:
            Unauthorized: no header, an unknown scheme, or a credential that does not verify.
            Forbidden: a valid JWT for another project.
        """
        if self.insecure:
            return _ANONYMOUS
        if not header:
            raise Unauthorized('Missing Authorization header: send "Bearer <token>" or "JWT <token>"')
        if self._tokens and header.startswith('Bearer ') and ',' not in header and ';' not in header:
            # PERF: the one shape Jet Admin sends, read as parse_credentials would read it, in a few C calls.
            value = header[7:]
            if value:
                if self._matches_token(value):
                    return _ANONYMOUS
                raise Unauthorized('Invalid token')
        credentials = parse_credentials(header)
        jwt_credential = shared = None
        for scheme, value in credentials:
            if scheme == 'jwt':
                if jwt_credential is not None:
                    raise Unauthorized('Several credentials of one kind in the Authorization header; send one')
                jwt_credential = value
            elif scheme in _SHARED_SCHEMES:
                if shared is not None:
                    raise Unauthorized('Several credentials of one kind in the Authorization header; send one')
                shared = value
        if jwt_credential is not None and self._jwt_key is not None:
            return self._verify_jwt(jwt_credential)
        if shared is not None and self._tokens:
            if self._matches_token(shared):
                return _ANONYMOUS
            raise Unauthorized('Invalid token')
        scheme = credentials[0][0]
        # Say what this server does take: "unsupported" alone leaves the caller guessing.
        expected = ' or '.join(([] if not self._tokens else ['"Bearer <token>"'])
                               + ([] if self._jwt_key is None else ['"JWT <token>"']))
        unconfigured = ' (this server has no JWT key configured)' if scheme == 'jwt' else ''
        raise Unauthorized(f'Unsupported Authorization scheme {scheme[:20]!r}{unconfigured}; send {expected}')

    def _matches_token(self, credential: str) -> bool:
        given = credential.encode('utf-8', 'surrogatepass')
        matched = False
        for token in self._tokens:
            # Every token is compared, so timing reveals neither a match nor which one.
            matched |= hmac.compare_digest(given, token)
        return matched

    def _verify_jwt(self, credential: str) -> Identity:
        assert self._jwt_key is not None and self._project is not None
        try:
            claims = jwt.decode(
                credential,
                self._jwt_key,
                algorithms=['RS256'],
                options={'require': ['exp'], 'verify_aud': False},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized('The JWT has expired') from None
        except jwt.InvalidTokenError as error:
            raise Unauthorized(f'Invalid JWT: {type(error).__name__}') from None
        projects = claims.get('projects')
        grant = projects.get(self._project) if isinstance(projects, Mapping) else None
        if not isinstance(grant, Mapping):
            raise Forbidden('The JWT does not grant access to this project')
        return Identity(claims, read_only=_granted_read_only(grant.get('read_only')), grant=grant)


def parse_credentials(header: str) -> list[tuple[str, str]]:
    """``(scheme in lower case, value)`` of each credential of an Authorization header, in order.

    Credentials are separated by commas; each is ``Scheme value`` with optional
    ``;key=value`` suffixes, which are dropped. Empty parts are skipped. The
    value is taken exactly, up to its suffix: whitespace or a NUL around it is
    part of it, so it cannot match a token.

    Raises:
        Unauthorized: no credential, a credential without a value, or too many credentials.
    """
    parts = [part.lstrip(' ') for part in header.split(',', MAX_CREDENTIALS)]
    if len(parts) > MAX_CREDENTIALS:
        raise Unauthorized(f'Too many credentials in the Authorization header (at most {MAX_CREDENTIALS})')
    credentials: list[tuple[str, str]] = []
    for part in parts:
        if not part.strip():
            continue  # "a, , b" or a trailing comma: nothing was said there
        scheme, _, rest = part.partition(' ')
        value = rest.split(';', 1)[0]
        if not scheme or not value:
            raise Unauthorized('Malformed Authorization header: expected "<scheme> <credential>"')
        credentials.append((scheme.lower(), value))
    if not credentials:
        raise Unauthorized('Malformed Authorization header: expected "<scheme> <credential>"')
    return credentials


#: ``read_only`` values that grant full access; any other value, ``"true"`` and ``1`` included, is read-only.
_FULL_ACCESS = (None, False, 0, '', 'false', 'False', 'FALSE', '0', 'no', 'off')


def _granted_read_only(value: Any) -> bool:
    """Whether a grant's ``read_only`` restricts: when in doubt it does, never the other way round."""
    if isinstance(value, (dict, list)):
        return bool(value)
    return not any(value is allowed or (type(value) is type(allowed) and value == allowed)
                   for allowed in _FULL_ACCESS)


def configured_tokens(token: str | Sequence[str] | None) -> list[str]:
    """The shared tokens: those given, else ``JET_SQLA_TOKEN``'s comma-separated ones."""
    if token is None:
        token = os.environ.get('JET_SQLA_TOKEN') or None
        return [part.strip() for part in token.split(',') if part.strip()] if token else []
    return [token] if isinstance(token, str) else list(token)


def configured_public_key(key: str | bytes | None) -> str | bytes | None:
    """The JWT public key: the one given, else ``JET_SQLA_JWT_PUBLIC_KEY``; a path to a file is read."""
    if key is None:
        key = os.environ.get('JET_SQLA_JWT_PUBLIC_KEY') or None
    if isinstance(key, str) and not key.lstrip().startswith('-----') and Path(key).is_file():
        return Path(key).read_text()
    return key
