"""Which addresses an input download may connect to.

An explicit deny table of the IANA IPv4 and IPv6 Special-Purpose Address Registries (Python's
``is_global``/``is_private`` differ between versions, so they are not relied on), plus the IPv4
address embedded in transition formats (IPv4-mapped and -compatible, 6to4, Teredo, NAT64), and
every IPv6 address outside global unicast 2000::/3.

A few special ranges are marked "globally reachable" by IANA (AS112 192.31.196.0/24,
192.175.48.0/24, 2001:4:112::/48 and 2620:4f:8000::/48, AMT 192.52.193.0/24 and 2001:3::/32, the
NAT64 prefix, ORCHIDv2, drone remote ID, TEREDO). They are refused anyway: inputs are user images
on the public internet and none of these ranges host them, while several of them (NAT64, 6to4,
Teredo) can route to an IPv4 address the guard would otherwise refuse.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable

Resolver = Callable[[str, int], list[str]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# (network, reason) pairs; more specific entries first so the reason names the narrowest range.
IPV4_DENY: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "this-network"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "shared-address-space"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "ietf-protocol-assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.31.196.0/24", "as112"),
    ("192.52.193.0/24", "amt"),
    ("192.88.99.0/24", "deprecated-6to4-relay"),
    ("192.168.0.0/16", "private"),
    ("192.175.48.0/24", "as112-direct-delegation"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("255.255.255.255/32", "limited-broadcast"),
    ("240.0.0.0/4", "reserved"),
)

IPV6_DENY: tuple[tuple[str, str], ...] = (
    ("::1/128", "loopback"),
    ("::/128", "unspecified"),
    ("::ffff:0:0/96", "ipv4-mapped"),
    ("::/96", "deprecated-ipv4-compatible"),
    ("64:ff9b::/96", "nat64"),
    ("64:ff9b:1::/48", "nat64-local-use"),
    ("100::/64", "discard-only"),
    ("100:0:0:1::/64", "dummy-prefix"),
    ("2001::/32", "teredo"),
    ("2001:1::1/128", "port-control-protocol-anycast"),
    ("2001:1::2/128", "turn-anycast"),
    ("2001:1::3/128", "dns-sd-srp-anycast"),
    ("2001:2::/48", "benchmarking"),
    ("2001:3::/32", "amt"),
    ("2001:4:112::/48", "as112"),
    ("2001:10::/28", "deprecated-orchid"),
    ("2001:20::/28", "orchid-v2"),
    ("2001:30::/28", "drone-remote-id"),
    ("2001::/23", "ietf-protocol-assignments"),
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4"),
    ("2620:4f:8000::/48", "as112-direct-delegation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment-routing"),
    ("fc00::/7", "unique-local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "deprecated-site-local"),
    ("ff00::/8", "multicast"),
)

_V4 = tuple((ipaddress.IPv4Network(n), r) for n, r in IPV4_DENY)
_V6 = tuple((ipaddress.IPv6Network(n), r) for n, r in IPV6_DENY)
_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_NAT64_WKP = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_COMPATIBLE = ipaddress.IPv6Network("::/96")


def _ipv4_reason(ip: ipaddress.IPv4Address) -> str | None:
    for network, reason in _V4:
        if ip in network:
            return reason
    return None


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, with the format's name."""
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    packed = ip.packed
    if ip.ipv4_mapped is not None:
        found.append(("ipv4-mapped", ip.ipv4_mapped))
    elif ip in _COMPATIBLE:
        found.append(("ipv4-compatible", ipaddress.IPv4Address(packed[12:])))
    if ip.sixtofour is not None:
        found.append(("6to4", ip.sixtofour))
    if ip.teredo is not None:
        server, client = ip.teredo
        found += [("teredo-server", server), ("teredo-client", client)]
    if ip in _NAT64_WKP:
        found.append(("nat64", ipaddress.IPv4Address(packed[12:])))
    elif ip in _NAT64_LOCAL:
        # RFC 6052 with a /48 prefix: the IPv4 address is split around the reserved octet 8.
        found.append(("nat64", ipaddress.IPv4Address(packed[6:8] + packed[9:11])))
    return found


def address_refused(address: str) -> str | None:
    """Why ``address`` may not be fetched, or None when it is a public unicast address."""
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_reason(ip)
    for kind, inner in embedded_ipv4(ip):
        reason = _ipv4_reason(inner)
        if reason is not None:
            return f"{kind} of {reason} {inner}"
    for network, reason in _V6:
        if ip in network:
            return reason
    if ip not in _GLOBAL_UNICAST:
        return "not-global-unicast"
    return None


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # Keep getaddrinfo's preference order (RFC 6724), without duplicates.
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve_within(resolver: Resolver, host: str, port: int, timeout: float) -> list[str]:
    """``resolver(host, port)``, or TimeoutError after ``timeout`` seconds.

    getaddrinfo cannot be interrupted; on timeout its thread is left to finish on its own
    (the system resolver's own timeouts end it).
    """
    box: list[list[str] | BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            box.append(resolver(host, port))
        except BaseException as exc:  # handed to the caller
            box.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="input-resolve", daemon=True).start()
    if not done.wait(max(timeout, 0.0)):
        raise TimeoutError(f"resolving {host} took longer than {timeout:.1f} s")
    result = box[0]
    if isinstance(result, BaseException):
        raise result
    return result
