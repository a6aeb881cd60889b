"""A Python client for the sdfleet task API: submit, get, wait, download. No Pulumi import.

```python
from sdfleet.client import Client, text_to_image

client = Client.from_config(stack="dev")  # or Client(url, key), or SDFLEET_API_URL/_KEY
sent = client.submit(text_to_image("sd15", "a lighthouse at dusk", steps=20))
status = client.wait(sent.id, deadline=600)
paths = client.download(status, "out/")
```

Errors: an answer that is not 2xx raises :class:`ApiError` carrying the status and the body
exactly as the API gave it; no answer at all raises :class:`TransportError`; ``wait`` past its
deadline raises :class:`WaitTimeout`. The API key is sent only as ``x-api-key`` to the API
URL and never appears in a repr, an exception or a log line.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sdfleet.client_config import ConfigError, Endpoint, resolve
from sdfleet.client_download import (
    DEFAULT_MAX_OUTPUT_BYTES,
    DownloadError,
    fetch_to,
    unique_names,
)
from sdfleet.client_http import (
    MAX_API_BODY_BYTES,
    ClientError,
    Transport,
    TransportError,
    UrllibTransport,
)

__all__ = [
    "ApiError",
    "Client",
    "ClientError",
    "ConfigError",
    "DownloadError",
    "OutputObject",
    "Submitted",
    "TaskStatus",
    "TransportError",
    "WaitTimeout",
    "text_to_image",
]

FINAL_STATES = frozenset({"completed", "failed"})
# Worth another poll: throttled, or the gateway/Lambda/table briefly unavailable.
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class ApiError(ClientError):
    """The API answered with a non-2xx status. ``body`` is its JSON (or text) as given."""

    def __init__(self, status: int, body: Any, text: str) -> None:
        super().__init__(status, text)
        self.status = status
        self.body = body
        self.text = text

    @property
    def code(self) -> str | None:
        error = self.body.get("error") if isinstance(self.body, dict) else None
        return error.get("code") if isinstance(error, dict) else None

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.text}"


class WaitTimeout(ClientError):
    """``wait`` reached its deadline; ``last`` is the latest status seen (None if none)."""

    def __init__(self, task_id: str, deadline: float, last: TaskStatus | None) -> None:
        state = last.state if last else "unknown"
        super().__init__(f"task {task_id} is still {state} after {deadline:g} s")
        self.task_id = task_id
        self.last = last


@dataclass(frozen=True)
class Submitted:
    """The POST answer: the task's id, runtime and where its outputs will be."""

    id: str
    runtime: str | None
    status: str
    output_location: str | None
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class OutputObject:
    key: str
    url: str = field(repr=False)  # presigned: a short-lived credential


@dataclass(frozen=True)
class TaskStatus:
    """The status API's answer (``GET /v1alpha2/tasks/{id}``)."""

    id: str
    state: str
    runtime: str | None
    attempts: int
    timings: Mapping[str, Any]
    error_code: str | None
    error_message: str | None
    outputs: tuple[OutputObject, ...]
    raw: Mapping[str, Any] = field(repr=False)
    trace_id: str | None = None
    """The X-Ray trace of the submitting request (find it in X-Ray / CloudWatch traces)."""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskStatus:
        raw_error = data.get("error")
        error: Mapping[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        outputs = []
        for item in data.get("outputs") or ():
            if isinstance(item, dict) and isinstance(item.get("url"), str):
                outputs.append(OutputObject(str(item.get("key") or ""), item["url"]))
        timings = data.get("timings")
        return cls(
            id=str(data.get("id", "")),
            state=str(data.get("state") or data.get("status") or ""),
            runtime=data.get("runtime"),
            attempts=int(data.get("attempts") or 0),
            timings=timings if isinstance(timings, dict) else {},
            error_code=error.get("code"),
            error_message=error.get("message"),
            outputs=tuple(outputs),
            raw=data,
            trace_id=data.get("trace_id") if isinstance(data.get("trace_id"), str) else None,
        )


def text_to_image(
    runtime: str,
    prompt: str,
    *,
    negative: str | None = None,
    steps: int | None = None,
    width: int | None = None,
    height: int | None = None,
    seed: int | None = None,
    count: int | None = None,
    task_id: str | None = None,
) -> dict[str, Any]:
    """A v1alpha2 ``text-to-image`` body for an SD WebUI runtime (content is txt2img's body)."""
    content: dict[str, Any] = {"prompt": prompt}
    for name, value in (
        ("negative_prompt", negative),
        ("steps", steps),
        ("width", width),
        ("height", height),
        ("seed", seed),
        ("batch_size", count),
    ):
        if value is not None:
            content[name] = value
    metadata: dict[str, Any] = {"runtime": runtime, "tasktype": "text-to-image"}
    if task_id:
        metadata["id"] = task_id
    return {"task": {"metadata": metadata, "content": content}}


@dataclass(frozen=True)
class Backoff:
    """Poll delays: ``initial`` growing by ``factor`` up to ``cap``, each jittered down to
    between half and all of it (clients polling together drift apart)."""

    initial: float = 1.0
    factor: float = 1.5
    cap: float = 10.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        full = min(self.cap, self.initial * self.factor**attempt)
        return full * (0.5 + rng.random() / 2)


class Client:
    """The task API at ``api_url`` (the stage URL, the stack's ``apiUrl``) with ``api_key``."""

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: Transport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if not api_url:
            raise ConfigError("api_url is required")
        self.api_url = api_url.rstrip("/")
        self._key = api_key
        self.timeout = timeout
        self.transport: Transport = transport or UrllibTransport()
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()

    @classmethod
    def from_config(
        cls,
        api_url: str | None = None,
        api_key: str | None = None,
        *,
        stack: str | None = None,
        sandbox: bool = False,
        **kwargs: Any,
    ) -> Client:
        """Explicit values, else the running sandbox (``sandbox``), else the stack's outputs
        (pulumi CLI), else the environment."""
        endpoint: Endpoint = resolve(api_url, api_key, stack=stack, sandbox=sandbox)
        return cls(endpoint.url, endpoint.key, **kwargs)

    def __repr__(self) -> str:
        return f"Client(api_url={self.api_url!r})"

    # -- requests --------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        headers = {"x-api-key": self._key, "accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
            headers["content-type"] = "application/json"
        response = self.transport(
            method, self.api_url + path, headers, data, self.timeout, MAX_API_BODY_BYTES
        )
        text = response.body.decode("utf-8", "replace")
        try:
            parsed: Any = json.loads(text) if text else None
        except ValueError:
            parsed = text
        if not 200 <= response.status < 300:
            raise ApiError(response.status, parsed, text)
        if not isinstance(parsed, dict):
            raise ApiError(response.status, parsed, f"not a JSON object: {text[:200]}")
        return parsed

    def submit(self, task: Mapping[str, Any] | None = None, /, **fields: Any) -> Submitted:
        """POST a v1alpha2 task: a body (``{"task": ...}`` or ``{"metadata", "content"}``), or
        the keywords of :func:`text_to_image`."""
        if task is None:
            body: Mapping[str, Any] = text_to_image(**fields)
        elif fields:
            raise TypeError("pass a task body or keywords, not both")
        else:
            body = task if "task" in task else {"task": dict(task)}
        answer = self._request("POST", "/v1alpha2", body)
        return Submitted(
            id=str(answer.get("id", "")),
            runtime=answer.get("runtime"),
            status=str(answer.get("status") or "queued"),
            output_location=answer.get("output_location"),
            raw=answer,
        )

    def get(self, task_id: str) -> TaskStatus:
        """The task's status; ApiError 404 when it does not exist or another key created it."""
        if not task_id:
            raise ValueError("task_id is required")
        return TaskStatus.from_json(self._request("GET", f"/v1alpha2/tasks/{quote(task_id, '')}"))

    def wait(
        self,
        task_id: str,
        *,
        deadline: float | None = 900.0,
        backoff: Backoff | None = None,
        on_progress: Callable[[TaskStatus], None] | None = None,
    ) -> TaskStatus:
        """Poll until the task is completed or failed (returned, not raised) or ``deadline``
        seconds pass (WaitTimeout). Throttling, 5xx and lost connections are polled through;
        other API errors (404) raise at once. ``on_progress`` sees every status read."""
        backoff = backoff or Backoff()
        end = None if deadline is None else self._clock() + deadline
        last: TaskStatus | None = None
        attempt = 0
        while True:
            try:
                last = self.get(task_id)
                if on_progress is not None:
                    on_progress(last)
                if last.final:
                    return last
            except ApiError as err:
                if err.status not in RETRYABLE_STATUS:
                    raise
            except TransportError:
                pass
            pause = backoff.delay(attempt, self._rng)
            attempt += 1
            if end is not None:
                left = end - self._clock()
                if left <= 0:
                    raise WaitTimeout(task_id, deadline or 0.0, last)
                pause = min(pause, left)
            self._sleep(pause)

    def download(
        self,
        status_or_id: TaskStatus | str,
        out_dir: str | Path,
        *,
        max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> list[Path]:
        """Save a completed task's outputs in ``out_dir`` (created if needed); their paths in
        output order. A task id is looked up first (its presigned URLs are fresh)."""
        status = self.get(status_or_id) if isinstance(status_or_id, str) else status_or_id
        if status.state != "completed":
            raise DownloadError(f"task {status.id} is {status.state or 'unknown'}, not completed")
        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        names = unique_names([o.key for o in status.outputs])
        paths: list[Path] = []
        for output, name in zip(status.outputs, names, strict=True):
            target = folder / name
            fetch_to(
                output.url,
                target,
                transport=self.transport,
                timeout=self.timeout,
                max_bytes=max_bytes,
            )
            paths.append(target)
        return paths
