"""Where a device is: `ssh://[user@]host[:port]`, or `local` (the agent in a subprocess on this machine, with the
device's Python: the same agent without the network, for comparisons and for a board's runtime installed here).

Every part is checked against what it may contain, because each becomes one argument of the ssh command line: a
host that starts with `-` would be read as an option, and nothing here is ever pasted into a shell string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

# RFC 1123 host names, IPv4 and bracketed IPv6 addresses; POSIX portable user names.
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252}))$")
_USER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")
_IP_ADDRESS = re.compile(r"^([0-9.]+|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)$")  # urlsplit drops IPv6's brackets
FORMS = "ssh://user@host, ssh://user@host:port, or local"


@dataclass(frozen=True)
class DeviceAddress:
    scheme: str  # "ssh" or "local"
    host: str = ""
    user: str = ""
    port: int | None = None

    @classmethod
    def parse(cls, url: str) -> DeviceAddress:
        """The address in `url`; ValueError saying which part is wrong (the recipe's validator reports it)."""
        if url == "local":
            return cls("local")
        parts = urlsplit(url)
        if parts.scheme != "ssh":
            raise ValueError(f"'{url}' is not a device address: write {FORMS}")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"'{url}': a device address has no path (write {FORMS})")
        host, user = parts.hostname or "", parts.username or ""
        if parts.password is not None:
            raise ValueError(f"'{url}': no password in a device address: ckit authenticates with keys only")
        if not _HOST.match(host if ":" not in host else f"[{host}]"):
            raise ValueError(f"'{url}': '{host}' is not a host name or address")
        if user and not _USER.match(user):
            raise ValueError(f"'{url}': '{user}' is not a user name")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"'{url}': the port is not a number from 1 to 65535") from None
        return cls("ssh", host, user, port)

    @property
    def destination(self) -> str:
        """ssh's destination argument: [user@]host (the port goes to -p)."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def default_name(self) -> str:
        """The runner's name when the recipe gives none: the host's first label (`coral` for coral.local)."""
        if self.scheme == "local":
            return "local"
        if _IP_ADDRESS.match(self.host):
            return self.host.replace(":", "-")  # runner names use ':' as their separator
        return self.host.split(".")[0]
