"""Loopback rules for Ray on one machine, shared by `varsearch serve`, `submit` and the tests.

Ray otherwise picks the machine's network address and may leave auth tokens under ~/.ray that
break later commands (see README "Environment").
"""

from __future__ import annotations

import ipaddress
import os

LOCAL_RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # Ray then uses 127.0.0.1 for everything
    "RAY_AUTH_MODE": "disabled",  # no token files left under ~/.ray by a local cluster
}


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 or ::1 addresses (not for names that merely resolve there)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def use_local_ray_env() -> None:
    """Set the loopback variables for this process and its children, keeping any set explicitly."""
    for key, value in LOCAL_RAY_ENV.items():
        os.environ.setdefault(key, value)
