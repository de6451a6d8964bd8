"""Device addresses: each part becomes one argument of ssh's command line, so each is checked."""

from __future__ import annotations

import pytest

from compiler_kit.device.address import DeviceAddress


@pytest.mark.parametrize(
    ("url", "user", "host", "port", "name"),
    [
        ("ssh://mendel@coral.local", "mendel", "coral.local", None, "coral"),
        ("ssh://pi@10.0.0.7:2222", "pi", "10.0.0.7", 2222, "10.0.0.7"),
        ("ssh://edge-box", "", "edge-box", None, "edge-box"),
        ("ssh://root@[::1]:22", "root", "::1", 22, "--1"),
    ],
)
def test_ssh_addresses(url: str, user: str, host: str, port: int | None, name: str) -> None:
    address = DeviceAddress.parse(url)
    assert (address.scheme, address.user, address.host, address.port) == ("ssh", user, host, port)
    assert address.default_name == name
    assert address.destination == (f"{user}@{host}" if user else host)


def test_local_address() -> None:
    assert DeviceAddress.parse("local") == DeviceAddress("local")
    assert DeviceAddress.parse("local").default_name == "local"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://coral", "is not a device address"),
        ("coral.local", "is not a device address"),
        ("ssh://-oProxyCommand=x@h", "is not a user name"),
        ("ssh://-oProxyCommand=x", "is not a host name"),
        ("ssh://pi:secret@coral", "no password"),
        ("ssh://coral/home", "has no path"),
        ("ssh://coral:99999", "port"),
        ("ssh://coral:ssh", "port"),
        ("ssh://co ral", "is not a host name"),
    ],
)
def test_refused_addresses(url: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        DeviceAddress.parse(url)
