"""API keys: their format, parsing and hashing. Pure: no I/O.

A key reads ``mg_<id>_<secret>``: ``id`` is 12 hex digits, public (it names the key in listings
and logs), ``secret`` is 32 random bytes in URL-safe base64 (43 characters). Only a SHA-256 of
id and secret is stored. A slow password hash (bcrypt, scrypt) buys nothing here: it protects
guessable secrets, and these are 256 random bits; a fast hash keeps every call cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Final

PREFIX: Final = "mg_"
_ID_BYTES: Final = 6
_SECRET_BYTES: Final = 32
_FORMAT: Final = re.compile(r"mg_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
#: What a key id looks like on its own (``mediagen keys revoke ID``).
KEY_ID: Final = re.compile(r"[0-9a-f]{12}")
#: A tenant name: what keys, certificates and ``x-mediagen-tenant`` may name.
TENANT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,99}")


class MalformedKey(ValueError):
    """The text is not a mediagen API key. The message never contains the text."""


@dataclass(frozen=True, repr=False)
class ApiKey:
    """A key as presented by a caller or just made: its public id and its secret."""

    key_id: str
    secret: str

    @property
    def text(self) -> str:
        """The whole key, as the caller sends it after ``Bearer``."""
        return f"{PREFIX}{self.key_id}_{self.secret}"

    def __repr__(self) -> str:  # never print the secret by accident
        return f"ApiKey(key_id={self.key_id!r}, secret=...)"


def check_tenant(name: str) -> str:
    """``name`` if it is a valid tenant name, else ValueError saying what one looks like."""
    if not TENANT.fullmatch(name):
        raise ValueError(
            f"invalid tenant {name!r}: 1 to 100 letters, digits, '.', '_', '@' or '-', "
            "starting with a letter or digit"
        )
    return name


def new_key() -> ApiKey:
    """A fresh key from the operating system's CSPRNG."""
    return ApiKey(secrets.token_hex(_ID_BYTES), secrets.token_urlsafe(_SECRET_BYTES))


def parse_key(text: str) -> ApiKey:
    """The id and secret of ``text``; :class:`MalformedKey` if it is not shaped like a key."""
    match = _FORMAT.fullmatch(text.strip())
    if match is None:
        raise MalformedKey("not a mediagen API key (expected mg_<id>_<secret>)")
    return ApiKey(match.group(1), match.group(2))


def hash_key(key: ApiKey) -> str:
    """What is stored for a key: SHA-256 over id and secret, hex."""
    return hashlib.sha256(f"{key.key_id}:{key.secret}".encode()).hexdigest()


def matches(key: ApiKey, stored_hash: str) -> bool:
    """Whether ``key`` is the one ``stored_hash`` was made from, in constant time."""
    return hmac.compare_digest(hash_key(key), stored_hash)
