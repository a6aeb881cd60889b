"""Where the client finds the API URL and key: explicit values, a named stack, or the environment.

Precedence, per value: an explicit argument, then the named stack's outputs (``apiUrl``,
``apiKey`` from ``pulumi stack output --json --show-secrets --stack X``, only when a stack is
named), then ``SDFLEET_API_URL`` / ``SDFLEET_API_KEY``. The stack's outputs are read once and
cached per stack name; the key is never printed or put in an error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdfleet.client_http import ClientError

ENV_URL = "SDFLEET_API_URL"
ENV_KEY = "SDFLEET_API_KEY"
SANDBOX_FILE_ENV = "SDFLEET_SANDBOX_FILE"
_PULUMI_TIMEOUT_S = 120


class ConfigError(ClientError):
    """The API URL or key (or the stack's outputs) could not be found."""


@dataclass(frozen=True)
class Endpoint:
    url: str
    key: str = field(default="", repr=False)


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=_PULUMI_TIMEOUT_S, check=False
    )


def stack_outputs(
    stack: str,
    *,
    run: Runner = _run,
    which: Callable[[str], str | None] = shutil.which,
) -> dict[str, Any]:
    """The stack's outputs with secrets shown (the caller must not print them)."""
    pulumi = which("pulumi")
    if pulumi is None:
        raise ConfigError(
            f"--stack {stack} needs the pulumi CLI, which is not on PATH; pass --api-url and "
            f"--api-key or set {ENV_URL} and {ENV_KEY} instead"
        )
    argv = [pulumi, "stack", "output", "--json", "--show-secrets", "--stack", stack]
    try:
        done = run(argv)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ConfigError(f"pulumi stack output --stack {stack}: {err}") from None
    if done.returncode != 0:
        # pulumi's stderr names the problem (no such stack, not logged in), never the values.
        detail = (done.stderr or "").strip().splitlines()[-3:]
        raise ConfigError(
            f"pulumi stack output --stack {stack} failed ({done.returncode}): " + " ".join(detail)
        )
    try:
        outputs = json.loads(done.stdout)
    except ValueError:
        raise ConfigError(f"pulumi stack output --stack {stack} did not print JSON") from None
    if not isinstance(outputs, dict):
        raise ConfigError(f"pulumi stack output --stack {stack} did not print an object")
    return outputs


def sandbox_file(env: Mapping[str, str] | None = None) -> Path:
    """Where a running ``sdfleet sandbox`` writes its API URL and key (mode 0600):
    ``$SDFLEET_SANDBOX_FILE``, else ``$XDG_CACHE_HOME/sdfleet/sandbox.json``."""
    env = os.environ if env is None else env
    if env.get(SANDBOX_FILE_ENV):
        return Path(env[SANDBOX_FILE_ENV])
    cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "sdfleet" / "sandbox.json"


def sandbox_endpoint(path: Path) -> tuple[str, str]:
    """The URL and key of the sandbox that wrote ``path``, if it still runs."""
    try:
        found = json.loads(path.read_text())
        url, key, pid = str(found["api_url"]), str(found["api_key"]), int(found["pid"])
    except FileNotFoundError:
        raise ConfigError(
            f"no sandbox is running ({path} is absent): start `sdfleet sandbox`"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a sandbox file: {exc}") from None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise ConfigError(f"the sandbox that wrote {path} (pid {pid}) is not running") from None
    except PermissionError:
        pass  # alive, another user's
    return url, key


def resolve(
    api_url: str | None = None,
    api_key: str | None = None,
    *,
    stack: str | None = None,
    sandbox: bool = False,
    env: Mapping[str, str] | None = None,
    outputs: Callable[[str], Mapping[str, Any]] = stack_outputs,
) -> Endpoint:
    """The API endpoint from explicit values, the running sandbox, a named stack's outputs, or
    the environment."""
    env = os.environ if env is None else env
    url, key = api_url or None, api_key or None
    if sandbox and (url is None or key is None):
        found_url, found_key = sandbox_endpoint(sandbox_file(env))
        url, key = url or found_url, key or found_key
    if stack and (url is None or key is None):
        found = outputs(stack)
        url = url or _text(found.get("apiUrl"))
        key = key or _text(found.get("apiKey"))
        if url is None:
            raise ConfigError(f"stack {stack} has no apiUrl output (is it deployed?)")
    url = url or env.get(ENV_URL) or None
    key = key or env.get(ENV_KEY) or None
    if url is None:
        raise ConfigError(f"no API URL: pass --api-url or --stack, or set {ENV_URL}")
    if key is None:
        raise ConfigError(f"no API key: pass --api-key or --stack, or set {ENV_KEY}")
    return Endpoint(url.rstrip("/"), key)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
