"""Unit tests: SSRF guard and downloads, sniffing, keys, payload transforms, policies."""

from __future__ import annotations

import base64
import io
import json
import threading
from typing import Any

import httpx
import pytest

from sdfleet.agent.contract import LEGACY_ALWAYSON_KEYS
from sdfleet.agent.errors import TaskError
from sdfleet.agent.inputs import InputFetcher, inline_sdwebui_inputs, is_url
from sdfleet.agent.logging_setup import JsonFormatter
from sdfleet.agent.metrics import Metrics
from sdfleet.agent.outputs import OutputFile, planned_keys, sniff
from sdfleet.agent.policies import Backoff, RetryPolicy, ShutdownPolicy
from sdfleet.agent.servers.comfyui import ComfyUIServer, output_refs
from sdfleet.agent.servers.sdwebui import build_payload, find_model, strip_hash

PUBLIC = "93.184.215.14"


def resolver(mapping: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int) -> list[str]:
        return mapping[host]

    return resolve


def fetcher(handler: Any, mapping: dict[str, list[str]] | None = None, **kw: Any) -> InputFetcher:
    return InputFetcher(
        transport=httpx.MockTransport(handler),
        resolver=resolver(mapping or {"img.example.com": [PUBLIC]}),
        **kw,
    )


# -- URL detection --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("https://img.example.com/a.png", True),
        ("s3://bucket/key.png", True),
        ("file:///etc/passwd", True),
        ("httpfoo", False),
        ("http is a protocol", False),
        ("https://img.example.com/a.png and more", False),
        # "$" would match before a final newline: the API does not see this as a URL (so
        # does not cap its length), and the agent must not fetch it either.
        ("https://img.example.com/a.png\n", False),
        ("iVBORw0KGgoAAAANSUhEUgAA", False),
        ("data:image/png;base64,iVBOR", False),
        (123, False),
    ],
)
def test_is_url_matches_whole_urls_only(value: Any, expected: bool) -> None:
    assert is_url(value) is expected


# -- SSRF guard -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:169.254.169.254",
        "100.64.0.1",
    ],
)
def test_private_and_special_addresses_are_refused(address: str) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200)

    f = fetcher(handler, {"evil.example": [address]})
    with pytest.raises(TaskError) as info:
        f.fetch("http://evil.example/x.png")
    assert info.value.code == "input_forbidden"
    assert address in info.value.message
    assert seen == []  # never connected


def test_any_private_answer_refuses_the_host() -> None:
    f = fetcher(lambda r: httpx.Response(200), {"mixed.example": [PUBLIC, "127.0.0.1"]})
    with pytest.raises(TaskError, match="input_forbidden"):
        f.fetch("http://mixed.example/x")


def test_allow_list_overrides_the_guard() -> None:
    f = fetcher(
        lambda r: httpx.Response(200, content=b"ok"),
        {"minio.local": ["10.0.0.5"]},
        allowed_hosts=frozenset({"minio.local"}),
    )
    assert f.fetch("http://minio.local/x") == b"ok"


def test_connection_goes_to_the_checked_address_with_the_original_host() -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, content=b"img")

    assert fetcher(handler).fetch("https://img.example.com:8443/a.png?sig=1") == b"img"
    [request] = requests
    assert request.url.host == PUBLIC and request.url.port == 8443
    assert request.url.query == b"sig=1"
    assert request.headers["host"] == "img.example.com:8443"
    assert request.extensions["sni_hostname"] == "img.example.com"


def test_redirect_to_metadata_is_refused() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"location": "http://meta.example/latest"})

    f = fetcher(handler, {"img.example.com": [PUBLIC], "meta.example": ["169.254.169.254"]})
    with pytest.raises(TaskError) as info:
        f.fetch("http://img.example.com/a.png")
    assert info.value.code == "input_forbidden"


def test_redirect_to_file_scheme_is_refused() -> None:
    f = fetcher(lambda r: httpx.Response(301, headers={"location": "file:///etc/passwd"}))
    with pytest.raises(TaskError, match="input_forbidden"):
        f.fetch("http://img.example.com/a.png")


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://img.example.com/x", "gopher://x/y"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(TaskError) as info:
        fetcher(lambda r: httpx.Response(200)).fetch(url)
    assert info.value.code == "input_forbidden"
    assert "http, https, s3" in info.value.message


def test_declared_size_over_limit() -> None:
    f = fetcher(
        lambda r: httpx.Response(200, headers={"content-length": "5000"}, content=b"x" * 5000),
        max_bytes=1000,
    )
    with pytest.raises(TaskError) as info:
        f.fetch("http://img.example.com/a.png")
    assert info.value.code == "input_too_large"


def test_streamed_size_over_limit_without_content_length() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"x" * 600, b"x" * 600]))

    with pytest.raises(TaskError) as info:
        fetcher(handler, max_bytes=1000).fetch("http://img.example.com/a.png")
    assert info.value.code == "input_too_large"


def test_http_error_status_is_a_download_failure() -> None:
    with pytest.raises(TaskError) as info:
        fetcher(lambda r: httpx.Response(404)).fetch("http://img.example.com/a.png")
    assert info.value.code == "input_download_failed"
    assert info.value.detail["status"] == 404


def test_read_timeout_is_a_download_failure() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(TaskError, match="input_download_failed"):
        fetcher(handler).fetch("http://img.example.com/a.png")


class FakeS3:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"ContentLength": len(self.data), "Body": io.BytesIO(self.data)}


def test_s3_inputs_and_their_limit() -> None:
    allowed = frozenset({"b"})
    assert InputFetcher(s3=FakeS3(b"abc"), allowed_s3_buckets=allowed).fetch("s3://b/k.png") == (
        b"abc"
    )
    with pytest.raises(TaskError, match="input_too_large"):
        InputFetcher(s3=FakeS3(b"x" * 20), max_bytes=10, allowed_s3_buckets=allowed).fetch(
            "s3://b/k.png"
        )


def test_inline_sdwebui_inputs_covers_every_image_field() -> None:
    f = fetcher(lambda r: httpx.Response(200, content=b"IMG"))
    url = "https://img.example.com/a.png"
    b64 = base64.b64encode(b"IMG").decode()
    content: dict[str, Any] = {
        "prompt": "https://img.example.com/a.png is not an image field",
        "init_images": [url, "AAAA"],
        "mask": url,
        "image": url,
        "imageList": [{"data": url, "name": "a"}],
        "alwayson_scripts": {
            "controlnet": {
                "args": [
                    {"image": url, "mask_image": url},
                    {"image": {"image": url, "mask": url}},
                    {"input_image": url},
                ]
            }
        },
    }
    out, count = inline_sdwebui_inputs(content, f)
    assert count == 9
    assert out["prompt"] == content["prompt"]
    assert out["init_images"] == [b64, "AAAA"]
    assert out["mask"] == out["image"] == out["imageList"][0]["data"] == b64
    units = out["alwayson_scripts"]["controlnet"]["args"]
    assert units[0] == {"image": b64, "mask_image": b64}
    assert units[1] == {"image": {"image": b64, "mask": b64}}
    assert units[2] == {"input_image": b64}
    assert content["init_images"][0] == url  # the original is untouched


# -- outputs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "ext", "ctype"),
    [
        (b"\x89PNG\r\n\x1a\n....", "png", "image/png"),
        (b"\xff\xd8\xff\xe0..JFIF", "jpg", "image/jpeg"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp", "image/webp"),
        (b"GIF89a....", "gif", "image/gif"),
        (b"GIF87a....", "gif", "image/gif"),
        (b"\x00\x00\x00\x18ftypmp42", "mp4", "video/mp4"),
        (b"hello", "bin", "application/octet-stream"),
    ],
)
def test_sniff(data: bytes, ext: str, ctype: str) -> None:
    assert sniff(data) == (ext, ctype)


def test_keys_are_deterministic() -> None:
    files = [OutputFile.from_bytes(b"\x89PNG\r\n\x1a\nx"), OutputFile.from_bytes(b"GIF89a")]
    assert planned_keys("a/b", "t1", files) == ["a/b/t1/t1-1.png", "a/b/t1/t1-2.gif"]
    assert planned_keys("", "t1", files[:1]) == ["t1/t1-1.png"]


# -- payload transforms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tasktype", "route"),
    [
        ("text-to-image", "txt2img"),
        ("image-to-image", "img2img"),
        ("extra-single-image", "extra-single-image"),
        ("extra-batch-images", "extra-batch-images"),
    ],
)
def test_routes(tasktype: str, route: str) -> None:
    assert build_payload(tasktype, {"prompt": "x"})[0] == route


def test_legacy_keys_are_stripped_and_override_merged() -> None:
    scripts: dict[str, Any] = {key: "v" for key in LEGACY_ALWAYSON_KEYS}
    scripts["override_settings"] = {"a": 1, "b": 1}
    scripts["controlnet"] = {"args": []}
    _, payload = build_payload(
        "text-to-image", {"override_settings": {"b": 2}, "alwayson_scripts": scripts}
    )
    assert payload["alwayson_scripts"] == {"controlnet": {"args": []}}
    assert payload["override_settings"] == {"a": 1, "b": 2}


def test_only_legacy_keys_removes_alwayson_scripts() -> None:
    _, payload = build_payload("text-to-image", {"alwayson_scripts": {"task": "text-to-image"}})
    assert "alwayson_scripts" not in payload


MODELS: list[dict[str, Any]] = [
    {
        "title": "v1-5-pruned-emaonly.safetensors [6ce0161689]",
        "model_name": "v1-5-pruned-emaonly",
        "filename": "/m/v1-5-pruned-emaonly.safetensors",
    },
    {
        "title": "anime/dreamshaper_8.safetensors",
        "model_name": "anime_dreamshaper_8",
        "filename": "/m/anime/dreamshaper_8.safetensors",
    },
]


@pytest.mark.parametrize(
    ("wanted", "index"),
    [
        ("v1-5-pruned-emaonly.safetensors", 0),
        ("v1-5-pruned-emaonly.safetensors [6ce0161689]", 0),
        ("v1-5-pruned-emaonly.safetensors [0000000000]", 0),
        ("v1-5-pruned-emaonly", 0),
        ("dreamshaper_8.safetensors", 1),
        ("anime/dreamshaper_8.safetensors", 1),
        ("anime_dreamshaper_8", 1),
    ],
)
def test_find_model(wanted: str, index: int) -> None:
    assert find_model(MODELS, wanted) is MODELS[index]


def test_find_model_unknown_and_strip_hash() -> None:
    assert find_model(MODELS, "nope.safetensors") is None
    assert strip_hash("x.safetensors [6ce0161689]") == "x.safetensors"


def test_comfy_output_refs_in_node_order() -> None:
    outputs = {
        "12": {"images": [{"filename": "b.png", "subfolder": "", "type": "output"}]},
        "9": {
            "images": [{"filename": "a.png", "subfolder": "", "type": "output"}],
            "animated": [True],
        },
        "20": {"gifs": [{"filename": "c.gif", "subfolder": "x", "type": "output"}]},
        "30": {"text": ["not a file"]},
    }
    assert [r["filename"] for r in output_refs(outputs)] == ["a.png", "b.png", "c.gif"]


def test_comfy_terminal_events_match_the_prompt_id() -> None:
    term = ComfyUIServer._is_terminal
    assert term(json.dumps({"type": "executing", "data": {"node": None, "prompt_id": "p"}}), "p")
    assert not term(
        json.dumps({"type": "executing", "data": {"node": None, "prompt_id": "q"}}), "p"
    )
    assert not term(json.dumps({"type": "executing", "data": {"node": "3", "prompt_id": "p"}}), "p")
    assert term(json.dumps({"type": "execution_error", "data": {"prompt_id": "p"}}), "p")
    assert not term(json.dumps({"type": "crystools.monitor", "data": {}}), "p")
    assert not term("not json", "p")


# -- policies -------------------------------------------------------------------------------


def test_retry_delays_are_bounded() -> None:
    policy = RetryPolicy(retries=6, base_delay=0.5, max_delay=3.0)
    assert policy.delays() == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]


def test_retry_retries_then_succeeds_and_reraises_when_exhausted() -> None:
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("down")
        return "ok"

    retried: list[int] = []
    policy = RetryPolicy(retries=3, base_delay=0, max_delay=0)
    assert policy.run(flaky, lambda e: True, on_retry=lambda n, e, w: retried.append(n)) == "ok"
    assert retried == [1, 2]
    calls["n"] = -10
    with pytest.raises(ConnectionError):
        policy.run(flaky, lambda e: True)
    assert calls["n"] == -6  # 1 try + 3 retries


def test_retry_does_not_retry_non_retryable() -> None:
    calls = {"n": 0}

    def bad() -> None:
        calls["n"] += 1
        raise ValueError("4xx")

    with pytest.raises(ValueError):
        RetryPolicy(retries=5, base_delay=0).run(bad, lambda e: not isinstance(e, ValueError))
    assert calls["n"] == 1


def test_backoff_is_capped() -> None:
    backoff = Backoff(base=1, max_delay=4)
    assert [backoff.next_delay() for _ in range(5)] == [1, 2, 4, 4, 4]


def test_shutdown_policy_first_drains_second_exits() -> None:
    now = [100.0]
    policy = ShutdownPolicy(drain_seconds=10, clock=lambda: now[0])
    assert policy.drain_remaining() is None
    assert policy.request() is False
    assert policy.stopping.is_set()
    now[0] = 104.0
    assert policy.drain_remaining() == 6.0
    now[0] = 200.0
    assert policy.drain_remaining() == 0.0
    assert policy.request() is True


# -- logs and metrics -----------------------------------------------------------------------


def test_json_log_lines_carry_fields() -> None:
    import logging

    record = logging.LogRecord(
        "agent.worker", logging.INFO, __file__, 1, "task %s", ("done",), None
    )
    record.fields = {"id": "t1", "timings": {"total_ms": 5}}
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "task done" and line["level"] == "INFO"
    assert line["id"] == "t1" and line["timings"] == {"total_ms": 5}
    assert line["ts"].endswith("Z")


def test_emf_document() -> None:
    stream = io.StringIO()
    Metrics("sd15", stream=stream).emit(
        {"TasksCompleted": 1, "InferenceMs": 200.0}, task_id="t1", trace_id="1-a-b"
    )
    doc = json.loads(stream.getvalue())
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "sdfleet/agent"
    assert directive["Dimensions"] == [["Runtime"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
        "TasksCompleted": "Count",
        "InferenceMs": "Milliseconds",
    }
    assert doc["Runtime"] == "sd15" and doc["TasksCompleted"] == 1 and doc["task_id"] == "t1"
    assert doc["trace_id"] == "1-a-b"


def test_tracing_continues_the_xray_trace() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sdfleet.agent.tracing import Tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider.get_tracer("t"), provider)
    header = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    span = tracing.start_task_span(header, {"sdfleet.task_id": "t1"})
    tracing.child(span, "inference").end()
    span.end()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    root = spans["sdfleet.task"]
    assert format(root.context.trace_id, "032x") == "5759e988bd862e3fe1be46a994272793"
    assert root.parent is not None and spans["inference"].parent is not None
    assert root.parent is not None and spans["inference"].parent is not None
    assert format(root.parent.span_id, "016x") == "53995c3f42cd8ad8"
    assert spans["inference"].parent.span_id == root.context.span_id
    assert isinstance(Tracing.setup(None, "x").tracer, trace.NoOpTracer)


def test_health_server_reports_checks() -> None:
    from sdfleet.agent.health import HealthServer

    state = {"live": True}
    server = HealthServer(
        0, lambda: (state["live"], {}), lambda: (False, {"server_ready": False}), host="127.0.0.1"
    ).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert httpx.get(base + "/healthz").status_code == 200
        ready = httpx.get(base + "/readyz")
        assert ready.status_code == 503 and ready.json() == {"ok": False, "server_ready": False}
        state["live"] = False
        assert httpx.get(base + "/healthz").status_code == 503
        assert httpx.get(base + "/nope").status_code == 404
    finally:
        server.stop()


def test_module_import_has_no_side_effects() -> None:
    before = threading.active_count()
    import importlib

    names = (
        "sdfleet.agent.worker",
        "sdfleet.agent.__main__",
        "sdfleet.agent.bench",
        "sdfleet.agent.bench_recovery",
        "sdfleet.agent.bench_telemetry",
        "sdfleet.agent.metrics_sink",
        "sdfleet.agent.node_info",
        "sdfleet.agent.settings",
        "sdfleet.agent.completion",
        "sdfleet.agent.occupancy",
        "sdfleet.agent.servers.comfyui",
    )
    for name in names:
        importlib.import_module(name)
    assert threading.active_count() == before


def test_liveness_reports_stale_stages() -> None:
    from sdfleet.agent.worker import Liveness

    now = [0.0]
    live = Liveness(clock=lambda: now[0])
    live.touch("gpu", 10)
    live.touch("receiver", 50)
    now[0] = 20
    assert live.stuck() == ["gpu"]
    live.touch("gpu", 10)
    assert live.stuck() == []
    live.clear("receiver")
    now[0] = 100
    assert live.stuck() == ["gpu"]


def test_large_error_detail_is_truncated_in_the_notification_only() -> None:
    from sdfleet.agent.outputs import notification

    detail = {"node_errors": {"4": {"errors": ["x" * 100_000]}}}
    body, attributes = notification(
        runtime="comfy",
        task_id="t1",
        status="failed",
        bucket="b",
        prefix="p",
        image_urls=[],
        context=None,
        error={"code": "validation_error", "message": "m", "detail": detail},
        timings={},
        attempt=1,
    )
    parsed = json.loads(body)
    assert parsed["error"]["detail"] == {"truncated": True, "see": "output_url"}
    assert parsed["output_url"] == "s3://b/p/t1/t1.out"
    assert attributes["status"]["StringValue"] == "failed"
    assert len(body) < 1000


def test_tracing_with_an_endpoint_uses_the_sdk() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from sdfleet.agent.tracing import Tracing

    tracing = Tracing.setup("http://127.0.0.1:9/v1/traces", "sdfleet-agent-test")
    assert isinstance(tracing.provider, TracerProvider)
    tracing.shutdown()  # no spans: returns at once, no export attempted


def test_error_code_dimension_is_one_of_the_documented_codes() -> None:
    from sdfleet.agent import errors

    assert errors.metric_code(errors.TIMEOUT) == "timeout"
    assert errors.metric_code("server said: <script>") == "other"
    assert {"invalid_task", "input_forbidden", "output_failed"} <= errors.CODES
