"""Whether a server starts with authentication, and what it says when it does not. Pure.

- ``MEDIAGEN_AUTH=off``: no authentication, anywhere it binds (said loudly).
- on (the default), with at least one active key: every call needs credentials.
- on, no keys, bound to loopback: OPEN — every call is the anonymous admin of the ``default``
  tenant, as before keys existed, with a loud warning. The decision is made once at start: a key
  created while an open server runs takes effect when the server next starts.
- on, no keys, any other address: refuse to start.
"""

from __future__ import annotations

import enum
import ipaddress

from mediagen.config import ConfigError


class AuthMode(enum.Enum):
    ENFORCED = "enforced"
    OPEN = "open"  # loopback, no keys yet
    OFF = "off"  # MEDIAGEN_AUTH=off


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses; names are not resolved (no DNS at start)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def auth_mode(*, enabled: bool, host: str, active_keys: int) -> AuthMode:
    """The mode for a server bound to ``host``; ConfigError when it must not start."""
    if not enabled:
        return AuthMode.OFF
    if active_keys > 0:
        return AuthMode.ENFORCED
    if is_loopback(host):
        return AuthMode.OPEN
    raise ConfigError(
        f"refusing to listen on {host} without authentication: there are no API keys. "
        "Create one with `mediagen keys create --tenant NAME` (same DATABASE_URL / data dir), "
        "bind to 127.0.0.1, or set MEDIAGEN_AUTH=off to run open on purpose"
    )


def warning_lines(mode: AuthMode, host: str) -> list[str]:
    """What a server says on stderr at start when it runs without authentication."""
    if mode is AuthMode.ENFORCED:
        return []
    bar = "!" * 78
    if mode is AuthMode.OFF:
        why = [
            f"!! AUTHENTICATION IS OFF (MEDIAGEN_AUTH=off): anyone who reaches {host} can",
            "!! create, read and cancel every job. Every call acts as the admin.",
        ]
    else:
        why = [
            "!! NO API KEYS: this server runs WITHOUT AUTHENTICATION (loopback only).",
            "!! Anyone on this machine can create, read and cancel every job.",
            "!! Create a key with `mediagen keys create --tenant NAME`; authentication",
            "!! turns on when the server next starts (not while it runs).",
        ]
    return [bar, *why, bar]
