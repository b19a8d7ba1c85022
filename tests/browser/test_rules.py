"""Pure rules: KEY_PRESS validation and the guard's domain and address decisions."""

from __future__ import annotations

import ipaddress

import pytest

from agents.browser import is_valid_key
from agents.netguard import address_block_reason, matches_avoided, normalize_domain


@pytest.mark.parametrize(
    "key",
    ["Enter", "escape", "Tab", "Backspace", "Delete", "ArrowUp", "PageDown", "Home", "End",
     "a", "Z", "7", "?", "Control+a", "Shift+Tab", "Control+Shift+ArrowLeft", "Meta+c"],
)  # fmt: skip
def test_supported_keys_are_valid(key: str) -> None:
    assert is_valid_key(key)


@pytest.mark.parametrize(
    "key",
    ["", "Enterr", "\n", "Control+", "Hyper+a", "Control+Control+a", "ab", "a" * 100],
)
def test_unsupported_keys_are_invalid(key: str) -> None:
    assert not is_valid_key(key)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("facebook.com", "facebook.com"),
        ("https://www.Facebook.com:443/path", "facebook.com"),
        ("*.facebook.com", "facebook.com"),
        (".facebook.com.", "facebook.com"),
        ("facebook.com:8080", "facebook.com"),
        ("bücher.de", "xn--bcher-kva.de"),
    ],
)
def test_avoid_domain_entries_are_normalized(entry: str, expected: str) -> None:
    assert normalize_domain(entry) == expected


@pytest.mark.parametrize(
    ("host", "blocked"),
    [
        ("facebook.com", True),
        ("m.facebook.com", True),
        ("a.b.facebook.com.", True),
        ("notfacebook.com", False),
        ("facebook.com.evil.net", False),
    ],
)
def test_avoided_domain_covers_subdomains_only(host: str, blocked: bool) -> None:
    assert (matches_avoided(host, ["facebook.com"]) is not None) is blocked


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.5", "169.254.169.254", "fd00:ec2::254",
     "::1", "fe80::1", "0.0.0.0", "224.0.0.1", "100.64.0.1", "::ffff:127.0.0.1", "240.0.0.1"],
)  # fmt: skip
def test_non_public_addresses_are_blocked(address: str) -> None:
    assert address_block_reason(ipaddress.ip_address(address)) is not None


def test_public_addresses_pass() -> None:
    assert address_block_reason(ipaddress.ip_address("93.184.216.34")) is None
    assert address_block_reason(ipaddress.ip_address("2606:4700::1111")) is None
