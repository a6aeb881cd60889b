"""metadata.callback at submission: shape, events, and the URL's scheme, host, port and length."""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sdfleet.agent.contract import STATUS_COMPLETED, STATUS_FAILED, STATUS_RUNNING
from sdfleet.agent.contract_base import MAX_URL_CHARS, ContractError
from sdfleet.agent.contract_callback import DEFAULT_EVENTS, EVENTS, Callback, parse_callback
from sdfleet.agent.netguard import IPV4_DENY, IPV6_DENY, address_refused

ROOT = Path(__file__).resolve().parent.parent
URL_PATH = "task.metadata.callback.url"


def refused(value: Any) -> ContractError:
    with pytest.raises(ContractError) as info:
        parse_callback(value)
    return info.value


def test_no_callback_is_none() -> None:
    assert parse_callback(None) is None


def test_a_plain_callback_gets_the_default_events() -> None:
    cb = parse_callback({"url": "https://Hooks.Example.com/sdfleet/in?token=abc"})
    assert cb == Callback(
        url="https://Hooks.Example.com/sdfleet/in?token=abc",
        events=DEFAULT_EVENTS,
        host="hooks.example.com",
        port=443,
        target="/sdfleet/in?token=abc",
        ip_literal=False,
    )
    assert DEFAULT_EVENTS == ("completed", "failed")
    assert cb.to_json() == {"url": cb.url, "events": ["completed", "failed"]}
    assert cb.wants("completed") and not cb.wants("running")


def test_events_are_the_notification_statuses() -> None:
    assert set(EVENTS) == {STATUS_COMPLETED, STATUS_FAILED, STATUS_RUNNING}


def test_events_are_kept_in_the_given_order() -> None:
    cb = parse_callback({"url": "https://a.example.com:8443", "events": ["running", "failed"]})
    assert cb is not None
    assert (cb.events, cb.port, cb.target) == (("running", "failed"), 8443, "/")


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://8.8.8.8/x", "8.8.8.8"),
        ("https://[2606:4700:4700::1111]:9443/x", "2606:4700:4700::1111"),
    ],
)
def test_public_ip_literals_pass(url: str, host: str) -> None:
    cb = parse_callback({"url": url})
    assert cb is not None and cb.host == host and cb.ip_literal


@pytest.mark.parametrize(
    ("value", "code", "field"),
    [
        ("https://a.example.com", "invalid_type", "task.metadata.callback"),
        ({}, "missing_field", URL_PATH),
        ({"url": "https://a.example.com", "secret": "x"}, "unknown_field",
         "task.metadata.callback.secret"),
        ({"url": "https://a.example.com", "events": "completed"}, "invalid_type",
         "task.metadata.callback.events"),
        ({"url": "https://a.example.com", "events": []}, "invalid_event",
         "task.metadata.callback.events"),
        ({"url": "https://a.example.com", "events": ["completed", "queued"]}, "invalid_event",
         "task.metadata.callback.events[1]"),
        ({"url": "https://a.example.com", "events": ["failed", "failed"]}, "duplicate_event",
         "task.metadata.callback.events[1]"),
        ({"url": "https://a.example.com", "events": [1]}, "invalid_event",
         "task.metadata.callback.events[0]"),
        ({"url": 5}, "invalid_type", URL_PATH),
    ],
)  # fmt: skip
def test_bad_shapes_name_the_field(value: Any, code: str, field: str) -> None:
    err = refused(value)
    assert (err.code, err.field) == (code, field)
    assert err.to_body()["error"]["field"] == field


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://a.example.com/", "insecure_callback_url"),
        ("ftp://a.example.com/", "insecure_callback_url"),
        ("//a.example.com/", "insecure_callback_url"),
        ("https://user:pw@a.example.com/", "credentials_in_url"),
        ("https://user@a.example.com/", "credentials_in_url"),
        ("https://a.example.com/#frag", "invalid_callback_url"),
        ("https://a.example.com/ x", "invalid_callback_url"),
        ("https://a.example.com\\@evil.example.org/", "invalid_callback_url"),
        ("https://exämple.com/", "invalid_callback_url"),
        ("https:///path", "invalid_callback_url"),
        ("https://a.example.com:/", "invalid_callback_url"),
        ("https://a.example.com:70000/", "invalid_callback_url"),
        ("https://a.example.com:0/", "forbidden_port"),
        ("https://a.example.com:22/", "forbidden_port"),
        ("https://a.example.com:80/", "forbidden_port"),
        ("https://a.example.com./", "invalid_callback_url"),
        ("https://-a.example.com/", "invalid_callback_url"),
        ("https://a_b.example.com/", "invalid_callback_url"),
        ("https://[fe80::1%25eth0]/", "invalid_callback_url"),
        ("https://%31%32%37.0.0.1/", "invalid_callback_url"),
        ("https://127.1/", "invalid_callback_url"),
        ("https://0x7f.0.0.1/", "invalid_callback_url"),
        ("https://2130706433/", "invalid_callback_url"),
        ("https://017.0.0.1/", "invalid_callback_url"),
        ("https://example.123/", "invalid_callback_url"),
        ("https://localhost/", "forbidden_host"),
        ("https://metadata/", "forbidden_host"),
        ("https://api.localhost/", "forbidden_host"),
        ("https://ip-10-0-0-1.ec2.internal/", "forbidden_host"),
        ("https://kube-dns.kube-system.svc.cluster.local/", "forbidden_host"),
        ("https://printer.local/", "forbidden_host"),
        ("https://127.0.0.1/", "forbidden_address"),
        ("https://169.254.169.254/latest/meta-data/", "forbidden_address"),
        ("https://10.1.2.3:8443/", "forbidden_address"),
        ("https://[::1]/", "forbidden_address"),
        ("https://[::ffff:169.254.169.254]/", "forbidden_address"),
        ("https://[fd00:ec2::254]/", "forbidden_address"),
        ("https://[64:ff9b::a9fe:a9fe]/", "forbidden_address"),
    ],
)
def test_unsafe_urls_are_refused(url: str, code: str) -> None:
    err = refused({"url": url})
    assert (err.code, err.field) == (code, URL_PATH)


def test_url_errors_do_not_echo_the_url() -> None:
    err = refused({"url": "http://a.example.com/?token=SECRET-TOKEN"})
    assert "SECRET-TOKEN" not in str(err) and "SECRET-TOKEN" not in err.message


def test_length_is_bounded() -> None:
    base = "https://a.example.com/"
    assert parse_callback({"url": base + "a" * (MAX_URL_CHARS - len(base))}) is not None
    err = refused({"url": base + "a" * (MAX_URL_CHARS - len(base) + 1)})
    assert (err.code, err.field) == ("too_long", URL_PATH)
    err = refused({"url": "https://" + "a" * 250 + ".example.com/"})
    assert err.code == "invalid_callback_url"


def _first_address(network: str) -> str:
    return str(ipaddress.ip_network(network).network_address)


@pytest.mark.parametrize("network", [n for n, _ in IPV4_DENY])
def test_every_denied_ipv4_range_is_refused_as_a_literal(network: str) -> None:
    err = refused({"url": f"https://{_first_address(network)}/"})
    assert err.code == "forbidden_address"


@pytest.mark.parametrize("network", [n for n, _ in IPV6_DENY])
def test_every_denied_ipv6_range_is_refused_as_a_literal(network: str) -> None:
    address = ipaddress.ip_network(network).network_address + 1
    err = refused({"url": f"https://[{address}]/"})
    assert err.code == "forbidden_address", address


_url_pieces = st.sampled_from(
    [
        "https://", "http://", "HTTPS://", "a.example.com", "127.0.0.1", "[::1]", "[2606::1]",
        "8.8.8.8", ":443", ":8443", ":0", ":", "@", "user:pw@", "/", "?q=1", "#f", "%41", ".",
        "..", "\\", " ", "\x00", "é", "0x7f", "localhost", "[", "]", "%25", "-", "1",
    ]
)  # fmt: skip
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    url=st.one_of(st.text(), st.lists(_url_pieces, max_size=10).map("".join)),
    events=st.one_of(st.none(), st.lists(st.sampled_from(["completed", "failed", "running",
                                                          "queued", ""]), max_size=4), _json),
    extra=st.dictionaries(st.sampled_from(["url", "events", "x"]), _json, max_size=2),
)  # fmt: skip
@example(url="https://[::ffff:7f00:1]/", events=None, extra={})
@example(url="https://a.example.com:65535", events=["running"], extra={})
def test_fuzzed_callbacks_pass_checked_or_raise_the_contract_error(
    url: str, events: Any, extra: dict[str, Any]
) -> None:
    value: dict[str, Any] = {"url": url, **extra}
    if events is not None:
        value["events"] = events
    try:
        cb = parse_callback(value)
    except ContractError as err:
        assert err.field is not None and err.field.startswith("task.metadata.callback")
        return
    assert cb is not None
    assert cb.url == value["url"] and cb.url.lower().startswith("https://")
    assert "@" not in cb.url.split("/")[2] and "#" not in cb.url
    assert cb.target.startswith("/") and 1 <= cb.port <= 65535
    if cb.ip_literal:
        assert address_refused(cb.host) is None
    assert len(set(cb.events)) == len(cb.events)


@settings(max_examples=300, deadline=None)
@given(value=_json)
def test_fuzzed_json_values_raise_only_the_contract_error(value: Any) -> None:
    with contextlib.suppress(ContractError):
        parse_callback(value)


def test_the_callback_check_imports_with_the_lambda_contract_and_netguard(
    tmp_path: Path,
) -> None:
    """What the task Lambda needs to call parse_callback: the contract modules plus
    netguard.py, and nothing beyond the standard library."""
    package = tmp_path / "sdfleet" / "agent"
    package.mkdir(parents=True)
    for init in (tmp_path / "sdfleet" / "__init__.py", package / "__init__.py"):
        init.write_text("")
    for module in [*(ROOT / "agent").glob("contract*.py"), ROOT / "agent" / "netguard.py"]:
        (package / module.name).write_text(module.read_text())
    code = (
        "import sys\n"
        f"sys.path[:] = [{str(tmp_path)!r}] + [p for p in sys.path if 'site-packages' not in p]\n"
        "from sdfleet.agent.contract_callback import parse_callback\n"
        "from sdfleet.agent.contract_base import ContractError\n"
        "assert parse_callback({'url': 'https://a.example.com/h'}).host == 'a.example.com'\n"
        "try:\n"
        "    parse_callback({'url': 'https://169.254.169.254/'})\n"
        "except ContractError as e:\n"
        "    assert e.code == 'forbidden_address'\n"
        "else:\n"
        "    raise SystemExit('not refused')\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
