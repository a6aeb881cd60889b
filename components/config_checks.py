"""Field declarations and value checks for the stack configuration model.

Each check returns an error text (what is allowed) or None; the parser prefixes the config
path and the bad value. Pure Python: no Pulumi import.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable
from dataclasses import field
from typing import Any

from sdfleet.components.patterns import DNS_LABEL

NAMESPACE = "sdfleet"

RUNTIME_NAME_MAX = 40  # room for suffixes in queue, role and NodePool names
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
STAGE_NAME = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
CIDR = re.compile(r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})/(\d{1,2})$")
K8S_VERSION = re.compile(r"^1\.(3[1-9])$")
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS: tuple[int, ...] = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400)
LOG_RETENTION_DAYS += (545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653)


class ConfigError(ValueError):
    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("invalid stack configuration:\n" + "\n".join(f"  {e}" for e in errors))


Check = Callable[[Any], str | None]


def cfg(
    key: str,
    default: Any = dataclasses.MISSING,
    check: Check | None = None,
    factory: Callable[[], Any] | None = None,
    doc: str = "",
) -> Any:
    """A config field: ``key`` is the camelCase name users write; ``check`` returns an error
    text (what is allowed) or None."""
    meta = {"key": key, "check": check, "doc": doc}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def one_of(*allowed: str) -> Check:
    return lambda v: None if v in allowed else f"is not one of {', '.join(allowed)}"


def in_range(lo: float | None = None, hi: float | None = None) -> Check:
    def check(v: Any) -> str | None:
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            if hi is None:
                return f"must be at least {lo}"
            if lo is None:
                return f"must be at most {hi}"
            return f"must be between {lo} and {hi}"
        return None

    return check


def matches(pattern: re.Pattern[str], what: str) -> Check:
    return lambda v: None if pattern.match(v) else f"must be {what}"


def dns_label(max_len: int = 63) -> Check:
    def check(v: str) -> str | None:
        if len(v) > max_len or not DNS_LABEL.match(v):
            return (
                f"must be a DNS-1123 label: lower-case letters, digits and '-', starting and "
                f"ending with a letter or digit, at most {max_len} characters"
            )
        return None

    return check


def cidr_check(v: str) -> str | None:
    m = CIDR.match(v)
    if not m or any(int(g) > 255 for g in m.groups()[:4]) or int(m.group(5)) > 32:
        return "must be an IPv4 CIDR such as 203.0.113.0/24"
    return None


# Source addresses no request over the internet can have (private, loopback, link-local, ...).
_NOT_INTERNET = tuple(
    ipaddress.IPv4Network(n)
    for n in ("0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16")
) + tuple(ipaddress.IPv4Network(n) for n in ("172.16.0.0/12", "192.168.0.0/16", "224.0.0.0/3"))


def public_cidrs_check(v: list[str]) -> str | None:
    """EKS public endpoint CIDRs: IPv4 networks (no host bits), public address space; the
    whole internet is written 0.0.0.0/0."""
    if not v:
        return "must list at least one CIDR (turn endpointPublicAccess off instead)"
    for c in v:
        try:
            net = ipaddress.IPv4Network(c, strict=True)
        except ValueError:
            return f"has {c!r}: each must be an IPv4 network such as 203.0.113.0/24 (no host bits)"
        if net.prefixlen and any(net.overlaps(n) for n in _NOT_INTERNET):
            return f"has {c!r}: each must be internet address space (or 0.0.0.0/0)"
    return None


def is_pinned_image(ref: str) -> bool:
    if "@sha256:" in ref:
        return True
    tag = ref.rsplit("/", 1)[-1].partition(":")[2]
    return bool(tag) and tag != "latest"


def pinned_image(v: str) -> str | None:
    return None if is_pinned_image(v) else "must be an image reference pinned by a tag or digest"


def unique(v: list[Any]) -> str | None:
    return None if len(set(v)) == len(v) else "must not repeat an entry"


# A key prefix in an IAM resource: no wildcards (they would widen the grant), printable ASCII.
_KEY_PREFIX = re.compile(r"^[!-)+->@-~]{1,512}$")


def input_locations(v: list[str]) -> str | None:
    """``bucket`` or ``bucket/prefix``: where s3:// task inputs may come from."""
    for entry in v:
        bucket, slash, prefix = entry.partition("/")
        if not BUCKET_NAME.match(bucket) or ".." in bucket:
            return f"has {entry!r}: each must be an S3 bucket name (3-63 of a-z 0-9 . -), optionally /prefix"
        if slash and not _KEY_PREFIX.match(prefix):
            return f"has {entry!r}: a prefix after the bucket must be 1-512 printable characters without * ? or spaces"
    return unique(v)


def instance_types_check(example: str) -> Check:
    return lambda v: (
        None
        if v and all(INSTANCE_TYPE.match(t) for t in v)
        else f"must be a non-empty list of EC2 instance types{example}"
    )


def subnet_ids_check(v: list[str]) -> str | None:
    return None if all(SUBNET_ID.match(s) for s in v) else "must be subnet ids"


def args_check(v: list[str]) -> str | None:
    bad = next((a for a in v if not a or len(a) > 4096 or "\x00" in a), None)
    return None if bad is None else f"has {bad!r}: arguments must be 1-4096 characters"
