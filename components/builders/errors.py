"""The pure builders' one error format: the field, the bad value and what is allowed."""

from __future__ import annotations

from typing import Any

from sdfleet.components.patterns import DNS_LABEL


def fail(field: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"{field}: got {value!r}; allowed: {allowed}")


def check_name(field: str, value: Any, max_len: int = 63) -> None:
    """A Kubernetes object name: a DNS-1123 label of at most ``max_len`` characters."""
    if not isinstance(value, str) or len(value) > max_len or not DNS_LABEL.match(value):
        raise fail(
            field, value, f"a lowercase DNS label (a-z, 0-9, '-'), at most {max_len} characters"
        )
