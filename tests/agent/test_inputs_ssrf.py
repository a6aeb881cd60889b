"""The SSRF guard refuses every IANA special-purpose range and IPv4 hidden in IPv6 formats."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from sdfleet.agent.errors import TaskError
from sdfleet.agent.inputs import InputFetcher
from sdfleet.agent.netguard import IPV4_DENY, IPV6_DENY, address_refused

# The IANA IPv4 and IPv6 Special-Purpose Address Registries (plus multicast and fec0::/10),
# written out here independently of the module's table: dropping a row there fails a test.
REGISTRY = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24",
    "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4", "255.255.255.255/32",
    "::1/128", "::/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
    "100:0:0:1::/64", "2001::/23", "2001::/32", "2001:1::1/128", "2001:1::2/128",
    "2001:2::/48", "2001:3::/32", "2001:4:112::/48", "2001:10::/28", "2001:20::/28",
    "2001:30::/28", "2001:db8::/32", "2002::/16", "2620:4f:8000::/48", "3fff::/20",
    "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
]  # fmt: skip


def inside(network: str) -> list[str]:
    """The first, a middle and the last address of ``network``."""
    net = ipaddress.ip_network(network)
    picks = {net[0], net[net.num_addresses // 2], net[-1]}
    return sorted(str(ip) for ip in picks)


SAMPLES = [(network, address) for network in REGISTRY for address in inside(network)]


@pytest.mark.parametrize(("network", "address"), SAMPLES)
def test_every_special_purpose_range_is_refused(network: str, address: str) -> None:
    assert address_refused(address) is not None, f"{address} in {network} passed the guard"


def test_the_module_table_covers_the_registry() -> None:
    table = {n for n, _ in IPV4_DENY} | {n for n, _ in IPV6_DENY}
    assert set(REGISTRY) <= table


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        # 6to4 wrapping the metadata service and a private address.
        ("2002:a9fe:a9fe::1", "6to4 of link-local 169.254.169.254"),
        ("2002:a00:1::", "6to4 of private 10.0.0.1"),
        # Teredo: client 10.0.0.1 (stored inverted), server 65.54.227.120.
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "teredo-client of private 10.0.0.1"),
        ("2001:0:a9fe:a9fe::", "teredo-server of link-local 169.254.169.254"),
        # NAT64, well-known prefix and local-use /48 (RFC 6052 layout around octet 8).
        ("64:ff9b::a9fe:a9fe", "nat64 of link-local 169.254.169.254"),
        ("64:ff9b:1:a00:0:100::", "nat64 of private 10.0.0.1"),
        # IPv4-compatible and IPv4-mapped.
        ("::10.0.0.1", "ipv4-compatible of private 10.0.0.1"),
        ("::ffff:169.254.169.254", "ipv4-mapped of link-local 169.254.169.254"),
        ("fec0::1", "deprecated-site-local"),
        ("ff02::1", "multicast"),
        ("224.0.0.251", "multicast"),
        ("fe80::1%eth0", "link-local"),
        # Outside 2000::/3 nothing is global unicast, listed or not.
        ("4000::1", "not-global-unicast"),
    ],
)
def test_embedded_and_deprecated_addresses_name_the_reason(address: str, reason: str) -> None:
    assert address_refused(address) == reason


@pytest.mark.parametrize(
    "address",
    ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e"],
)
def test_public_addresses_pass(address: str) -> None:
    assert address_refused(address) is None


@pytest.mark.parametrize("address", ["2002:a9fe:a9fe::1", "fec0::1", "192.0.0.170", "3fff::1"])
def test_the_fetcher_refuses_before_connecting(address: str) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"x")

    f = InputFetcher(transport=httpx.MockTransport(handler), resolver=lambda host, port: [address])
    with pytest.raises(TaskError) as info:
        f.fetch("http://evil.example/x.png", "init_images[0]")
    assert info.value.code == "input_forbidden"
    assert address in info.value.message and "init_images[0]" in info.value.message
    assert info.value.detail["field"] == "init_images[0]"
    assert seen == []


def test_a_public_address_is_fetched() -> None:
    f = InputFetcher(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=b"img")),
        resolver=lambda host, port: ["2606:4700:4700::1111"],
    )
    assert f.fetch("http://img.example.com/a.png") == b"img"
