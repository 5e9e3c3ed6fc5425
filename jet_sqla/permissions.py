"""Jet Admin's own permissions, as a JWT's project grant carries them.

A grant (``projects.<project>`` of the claims) may hold ``owner``,
``super_group``, ``read_only`` and ``permissions``. The last is base64 of a
gzip-compressed JSON list::

    [{"permission_type": "model", "permission_object": "<resource>.<collection>",
      "permission_actions": "rwd"}, ...]

With ``Bridge(..., jet_permissions=True)``, a JWT user may run an action on a
collection when the grant is ``owner`` or ``super_group``, or when a ``model``
permission gives ``w`` on that collection. A common action needs a grant that
is not read-only (checked for every action before this). A shared-token request
has no grant and is not concerned: that secret belongs to the server.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import logging
import zlib
from collections.abc import Mapping
from typing import Any

from .collection import Collection
from .errors import Forbidden

__all__ = ['MAX_PERMISSIONS_SIZE', 'JetPermissions', 'decode_permissions']

log = logging.getLogger(__name__)

#: The most bytes a grant's permissions may inflate to; a token is small, a gzip bomb is not.
MAX_PERMISSIONS_SIZE = 1024 * 1024


def decode_permissions(value: Any) -> list[Mapping[str, Any]]:
    """The permission entries of a grant's ``permissions`` (base64 of gzip JSON).

    Raises:
        Forbidden: the value does not decode to a list of objects; the caller
            is refused rather than guessed about.
    """
    if value is None:
        return []
    if isinstance(value, list):  # already decoded, as some tokens carry it
        entries: Any = value
    else:
        if not isinstance(value, str):
            raise Forbidden('The JWT grant carries permissions that cannot be read')
        try:
            compressed = base64.b64decode(value + '=' * (-len(value) % 4), validate=False)
            inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
            text = inflater.decompress(compressed, MAX_PERMISSIONS_SIZE)
            if inflater.unconsumed_tail:
                raise ValueError('permissions inflate past the limit')
            entries = json.loads(text)
        except (binascii.Error, zlib.error, gzip.BadGzipFile, ValueError, UnicodeDecodeError) as error:
            log.info('refusing a JWT grant whose permissions do not decode: %s', type(error).__name__)
            raise Forbidden('The JWT grant carries permissions that cannot be read') from None
    if not isinstance(entries, list) or not all(isinstance(entry, Mapping) for entry in entries):
        raise Forbidden('The JWT grant carries permissions that cannot be read')
    return entries


def may_write(entries: list[Mapping[str, Any]], collection: str) -> bool:
    """Whether a ``model`` permission gives ``w`` on ``collection`` (its object after the first ``.``)."""
    for entry in entries:
        target = entry.get('permission_object')
        actions = entry.get('permission_actions')
        if entry.get('permission_type') != 'model' or not isinstance(target, str) or not isinstance(actions, str):
            continue
        _, dot, name = target.partition('.')
        if dot and name == collection and 'w' in actions:
            return True
    return False


class JetPermissions:
    """Checks a JWT grant against the collection an action runs on."""

    def check(self, grant: Mapping[str, Any] | None, collection: Collection | None) -> None:
        """Let the run go on, or refuse it.

        Args:
            grant: The JWT's project grant; ``None`` for a shared-token request.
            collection: The collection the action runs on; ``None`` for a common action.

        Raises:
            Forbidden: naming the collection, when the grant gives no write access to it.
        """
        if grant is None:
            return
        if grant.get('owner') is True or grant.get('super_group') is True:
            return
        if collection is None:
            if grant.get('read_only') is True:
                raise Forbidden('Read-only users may not execute actions')
            return
        if may_write(decode_permissions(grant.get('permissions')), collection.name):
            return
        raise Forbidden(f'Your Jet Admin permissions do not allow changing {collection.name!r}')
