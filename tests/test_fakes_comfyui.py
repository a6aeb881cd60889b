"""Tests of the fake ComfyUI server over real HTTP and a real websocket client."""

from __future__ import annotations

import copy
import json
import struct
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websocket

from sdfleet.fakes.comfyui import FakeComfyUI
from sdfleet.fakes.images import make_png, png_size, png_text

FAST = 0.03
TIMEOUT = 5


def graph(
    seed: int = 1, prefix: str = "ComfyUI", w: int = 64, h: int = 48, batch: int = 1
) -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": w, "height": h, "batch_size": batch}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": 4, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
            "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["8", 0]},
              "_meta": {"title": "Save"}},
    }  # fmt: skip


@pytest.fixture
def srv() -> Iterator[FakeComfyUI]:
    with FakeComfyUI(execution_seconds=FAST) as s:
        yield s


@pytest.fixture
def http(srv: FakeComfyUI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.url, timeout=TIMEOUT) as c:
        yield c


@pytest.fixture
def ws(srv: FakeComfyUI) -> Iterator[websocket.WebSocket]:
    sock = websocket.create_connection(srv.ws_url("c1"), timeout=TIMEOUT)
    first = json.loads(sock.recv())
    assert first["type"] == "status" and first["data"]["sid"] == "c1"
    yield sock
    sock.close()


def submit(http: httpx.Client, g: dict[str, Any], **extra: Any) -> str:
    body = {"prompt": g, "client_id": "c1", **extra}
    r = http.post("/prompt", json=body)
    assert r.status_code == 200, r.text
    return str(r.json()["prompt_id"])


def events_until_done(sock: websocket.WebSocket, prompt_id: str) -> list[tuple[str, Any]]:
    """Read until the terminal ``executing {node: null, prompt_id}``; binary frames as ("binary", bytes)."""
    out: list[tuple[str, Any]] = []
    while True:
        msg = sock.recv()
        if isinstance(msg, bytes):
            out.append(("binary", msg))
            continue
        d = json.loads(msg)
        out.append((d["type"], d["data"]))
        if (
            d["type"] == "executing"
            and d["data"]["node"] is None
            and d["data"].get("prompt_id") == prompt_id
        ):
            return out


def core_types(events: list[tuple[str, Any]]) -> list[str]:
    noise = {"progress_state", "crystools.monitor", "binary", "progress"}
    return [t for t, _ in events if t not in noise]


# ---------------------------------------------------------------- happy path


def test_run_event_order_history_and_view(
    srv: FakeComfyUI, http: httpx.Client, ws: websocket.WebSocket
) -> None:
    pid = submit(http, graph(), prompt_id="p-1")
    assert pid == "p-1"
    ev = events_until_done(ws, pid)
    types = core_types(ev)
    assert types[:3] == ["status", "execution_start", "execution_cached"]
    assert types[-3:] == ["execution_success", "status", "executing"]
    executing = [d["node"] for t, d in ev if t == "executing" and d["node"] is not None]
    assert set(executing) == set(graph()) and executing.index("3") < executing.index(
        "8"
    ) < executing.index("9")
    assert all(
        d["prompt_id"] == pid
        for t, d in ev
        if t.startswith("execution_") or t in ("executing", "progress")
    )
    assert [d["value"] for t, d in ev if t == "progress"] == [1, 2, 3, 4]
    assert {t for t, _ in ev} >= {
        "crystools.monitor",
        "binary",
        "progress_state",
    }  # tolerance checks
    frame = next(d for t, d in ev if t == "binary")
    assert struct.unpack(">II", frame[:8]) == (1, 2) and frame[8:].startswith(b"\x89PNG")
    start = next(d for t, d in ev if t == "execution_start")
    assert isinstance(start["timestamp"], int)
    executed = next(d for t, d in ev if t == "executed")
    assert executed["node"] == "9"
    assert executed["output"]["images"] == [
        {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}
    ]

    entry = http.get(f"/history/{pid}").json()[pid]
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_success",
    ]
    assert entry["outputs"] == {"9": executed["output"]}
    number, hid, g, extra, outputs = entry["prompt"]
    assert number == 0
    assert (hid, g, outputs, extra["client_id"]) == (pid, graph(), ["9"], "c1")
    assert entry["meta"]["9"]["node_id"] == "9"

    r = http.get(
        "/view", params={"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}
    )
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert png_size(r.content) == (64, 48)
    assert json.loads(png_text(r.content)["prompt"]) == graph()


def test_api_prefix_and_default_ids(srv: FakeComfyUI, http: httpx.Client) -> None:
    r1 = http.post("/api/prompt", json={"prompt": graph(seed=1), "client_id": "x"})
    r2 = http.post("/prompt", json={"prompt": graph(seed=2), "front": True})
    assert r1.status_code == r2.status_code == 200
    assert (
        len(r1.json()["prompt_id"]) == 36 and r1.json()["number"] == 0 and r2.json()["number"] == -1
    )
    assert r1.json()["node_errors"] == {}
    pid = r1.json()["prompt_id"]
    srv.wait_for_history(pid, TIMEOUT)
    assert pid in http.get("/api/history").json()
    assert http.get("/api/system_stats").json()["devices"][0]["type"] == "cuda"
    assert http.get("/api/queue").status_code == 200
    assert srv.wait_for_calls("/prompt", 2)[0].path == "/api/prompt"


def test_batch_and_subfolder_prefix(srv: FakeComfyUI, http: httpx.Client) -> None:
    pid = submit(http, graph(prefix="jobs/abc", batch=2))
    entry = srv.wait_for_history(pid, TIMEOUT)
    assert entry["outputs"]["9"]["images"] == [
        {"filename": "abc_00001_.png", "subfolder": "jobs", "type": "output"},
        {"filename": "abc_00002_.png", "subfolder": "jobs", "type": "output"},
    ]
    pid = submit(http, graph(prefix="jobs/abc", seed=5))
    entry = srv.wait_for_history(pid, TIMEOUT)
    assert entry["outputs"]["9"]["images"][0]["filename"] == "abc_00003_.png"
    r = http.get("/view", params={"filename": "abc_00003_.png", "subfolder": "jobs"})
    assert r.status_code == 200


# ---------------------------------------------------------------- validation


def post_error(http: httpx.Client, body: Any) -> dict[str, Any]:
    r = http.post("/prompt", json=body)
    assert r.status_code == 400, r.text
    out: dict[str, Any] = r.json()
    assert set(out) == {"error", "node_errors"}
    assert set(out["error"]) == {"type", "message", "details", "extra_info"}
    return out


def test_prompt_level_errors(http: httpx.Client) -> None:
    assert post_error(http, {"client_id": "x"})["error"]["type"] == "no_prompt"
    g = graph()
    g["3"]["class_type"] = "KSamplerTurbo"
    e = post_error(http, {"prompt": g})["error"]
    assert e["type"] == "invalid_prompt" and e["details"] == "Node ID '#3'"
    assert "KSamplerTurbo does not exist" in e["message"]
    del g["3"]["class_type"]
    assert post_error(http, {"prompt": g})["error"]["type"] == "invalid_prompt"
    ui_workflow = {"nodes": [{"id": 1}], "links": [], "version": 0.4}
    assert post_error(http, {"prompt": ui_workflow})["error"]["type"] == "invalid_prompt"
    g = graph()
    del g["9"]
    e = post_error(http, {"prompt": g})["error"]
    assert e["type"] == "prompt_no_outputs" and e["message"] == "Prompt has no outputs"


def test_bad_json_is_plain_500(http: httpx.Client) -> None:
    r = http.post("/prompt", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 500 and not r.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("node", "name", "value", "etype"),
    [
        ("4", "ckpt_name", "missing.safetensors", "value_not_in_list"),
        ("3", "steps", 0, "value_smaller_than_min"),
        ("3", "denoise", 2.0, "value_bigger_than_max"),
        ("3", "seed", "abc", "invalid_input_type"),
        ("3", "model", ["4"], "bad_linked_input"),
        ("3", "model", ["4", 1], "return_type_mismatch"),
        ("3", "sampler_name", "euler_fancy", "value_not_in_list"),
        ("3", "model", None, "required_input_missing"),
    ],
)
def test_node_errors(http: httpx.Client, node: str, name: str, value: Any, etype: str) -> None:
    g = graph()
    if value is None:
        del g[node]["inputs"][name]
    else:
        g[node]["inputs"][name] = value
    out = post_error(http, {"prompt": g})
    assert out["error"]["type"] == "prompt_outputs_failed_validation"
    assert out["error"]["message"] == "Prompt outputs failed validation"
    ne = out["node_errors"][node]
    assert ne["class_type"] == g[node]["class_type"] and ne["dependent_outputs"] == ["9"]
    err = ne["errors"][0]
    assert err["type"] == etype and err["extra_info"]["input_name"] == name
    assert name in err["details"] and err["message"] in out["error"]["details"]


def test_partly_invalid_graph_runs_valid_outputs(srv: FakeComfyUI, http: httpx.Client) -> None:
    g = graph()
    g["10"] = {"class_type": "PreviewImage", "inputs": {}}
    r = http.post("/prompt", json={"prompt": g, "client_id": "c1"})
    assert r.status_code == 200
    body = r.json()
    assert body["node_errors"]["10"]["errors"][0]["type"] == "required_input_missing"
    entry = srv.wait_for_history(body["prompt_id"], TIMEOUT)
    assert list(entry["outputs"]) == ["9"] and entry["prompt"][4] == ["9"]


def test_partial_execution_targets_and_preview(srv: FakeComfyUI, http: httpx.Client) -> None:
    g = graph()
    g["10"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    pid = submit(http, g, partial_execution_targets=["10"])
    entry = srv.wait_for_history(pid, TIMEOUT)
    (img,) = entry["outputs"]["10"]["images"]
    assert img["type"] == "temp" and img["filename"].startswith("ComfyUI_temp_")
    assert http.get("/view", params=img).status_code == 200


# ---------------------------------------------------------------- uploads and LoadImage


def img2img_graph(image: str) -> dict[str, Any]:
    g = graph()
    g["10"] = {"class_type": "LoadImage", "inputs": {"image": image}}
    g["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    g["3"]["inputs"]["latent_image"] = ["11", 0]
    del g["5"]
    return g


def upload(http: httpx.Client, name: str, data: bytes, **fields: str) -> httpx.Response:
    return http.post("/upload/image", files={"image": (name, data, "image/png")}, data=fields)


def test_load_image_must_be_uploaded(srv: FakeComfyUI, http: httpx.Client) -> None:
    out = post_error(http, {"prompt": img2img_graph("in.png")})
    err = out["node_errors"]["10"]["errors"][0]
    assert (
        err["type"] == "custom_validation_failed"
        and err["details"] == "image - Invalid image file: in.png"
    )
    png = make_png(40, 24, 3)
    r = upload(http, "in.png", png)
    assert r.status_code == 200 and r.json() == {"name": "in.png", "subfolder": "", "type": "input"}
    assert srv.uploads == {"in.png": png}
    pid = submit(http, img2img_graph("in.png"))
    entry = srv.wait_for_history(pid, TIMEOUT)
    name = entry["outputs"]["9"]["images"][0]["filename"]
    assert png_size(http.get("/view", params={"filename": name}).content) == (40, 24)
    call = srv.wait_for_calls("/upload/image", 1, completed=True)[0]
    assert call.body["image"] == {"filename": "in.png", "size": len(png)}


def test_upload_renaming_and_fields(srv: FakeComfyUI, http: httpx.Client) -> None:
    a, b = make_png(8, 8, 1), make_png(8, 8, 2)
    assert upload(http, "x.png", a).json()["name"] == "x.png"
    assert upload(http, "x.png", a).json()["name"] == "x.png"  # identical bytes reuse the name
    assert upload(http, "x.png", b).json()["name"] == "x (1).png"
    assert upload(http, "x.png", make_png(8, 8, 9)).json()["name"] == "x (2).png"
    assert upload(http, "x.png", b, overwrite="true").json()["name"] == "x.png"
    assert srv.uploads["x.png"] == b
    r = upload(http, "y.png", a, subfolder="jobs/1", type="input")
    assert r.json() == {"name": "y.png", "subfolder": "jobs/1", "type": "input"}
    assert "jobs/1/y.png" in srv.uploads
    assert http.post("/prompt", json={"prompt": img2img_graph("jobs/1/y.png")}).status_code == 200
    assert (
        http.get(
            "/view", params={"filename": "y.png", "subfolder": "jobs/1", "type": "input"}
        ).content
        == a
    )
    assert upload(http, "z.png", a, type="bogus").status_code == 500
    assert upload(http, "z.png", a, subfolder="../etc").status_code == 400
    assert (
        http.post(
            "/upload/image", data={"subfolder": "x"}, files={"other": ("a", b"1")}
        ).status_code
        == 400
    )


def test_view_errors(http: httpx.Client) -> None:
    assert http.get("/view").status_code == 404
    assert http.get("/view", params={"filename": "nope.png"}).status_code == 404
    assert http.get("/view", params={"filename": "a.png", "type": "secret"}).status_code == 400
    assert http.get("/view", params={"filename": "../a.png"}).status_code == 400
    assert http.get("/view", params={"filename": "a.png", "subfolder": "../x"}).status_code == 403


# ---------------------------------------------------------------- targeting


def test_events_only_to_the_prompt_client(
    srv: FakeComfyUI, http: httpx.Client, ws: websocket.WebSocket
) -> None:
    other = websocket.create_connection(srv.ws_url("c2"), timeout=TIMEOUT)
    other.recv()
    pid = submit(http, graph())
    events_until_done(ws, pid)
    # c2 gets broadcasts only; a sentinel prompt of its own ends its stream
    r = http.post("/prompt", json={"prompt": graph(seed=99), "client_id": "c2"})
    seen = events_until_done(other, r.json()["prompt_id"])
    before = seen[: next(i for i, (t, d) in enumerate(seen) if t == "execution_start")]
    assert {t for t, _ in before} <= {"status", "crystools.monitor"}
    other.close()


def test_no_client_id_gets_no_targeted_events(
    srv: FakeComfyUI, http: httpx.Client, ws: websocket.WebSocket
) -> None:
    r = http.post("/prompt", json={"prompt": graph()})
    pid = r.json()["prompt_id"]
    srv.wait_for_history(pid, TIMEOUT)
    sentinel = submit(http, graph(seed=2))
    ev = events_until_done(ws, sentinel)
    first_start = next(i for i, (t, d) in enumerate(ev) if t == "execution_start")
    broadcast = {t for t, _ in ev[:first_start]}
    assert "progress" in broadcast and "executing" not in broadcast and "executed" not in broadcast
    assert all(d["prompt_id"] == sentinel for t, d in ev if t == "execution_start")


def test_reconnect_replaces_and_stale_close_bug() -> None:
    for bug in (False, True):
        with (
            FakeComfyUI(execution_seconds=0, stale_close_bug=bug) as s,
            httpx.Client(base_url=s.url) as http,
        ):
            old = websocket.create_connection(s.ws_url("c1"), timeout=TIMEOUT)
            old.recv()
            new = websocket.create_connection(s.ws_url("c1"), timeout=TIMEOUT)
            new.recv()
            old.close()
            s.wait_for_calls("/ws", 2)
            pid = submit(http, graph())
            s.wait_for_history(pid, TIMEOUT)
            new.settimeout(0.3 if bug else TIMEOUT)
            if bug:
                with pytest.raises(websocket.WebSocketTimeoutException):
                    events_until_done(new, pid)
            else:
                assert core_types(events_until_done(new, pid))[-1] == "executing"
            new.close()


def test_feature_flags_give_metadata_previews(
    srv: FakeComfyUI, http: httpx.Client, ws: websocket.WebSocket
) -> None:
    ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
    reply = json.loads(ws.recv())
    assert reply["type"] == "feature_flags" and reply["data"]["supports_preview_metadata"] is True
    pid = submit(http, graph())
    frame = next(d for t, d in events_until_done(ws, pid) if t == "binary")
    kind, n = struct.unpack(">II", frame[:8])
    meta = json.loads(frame[8 : 8 + n])
    assert kind == 4 and meta["prompt_id"] == pid and meta["image_type"] == "image/png"
    assert frame[8 + n :].startswith(b"\x89PNG")


def test_origin_check(http: httpx.Client) -> None:
    assert http.get("/system_stats", headers={"Origin": "http://evil.example"}).status_code == 403


# ---------------------------------------------------------------- faults


def test_execution_error(srv: FakeComfyUI, http: httpx.Client, ws: websocket.WebSocket) -> None:
    srv.fail_next_execution()
    pid = submit(http, graph())
    ev = events_until_done(ws, pid)
    types = core_types(ev)
    assert types[-3:] == ["execution_error", "status", "executing"]
    err = next(d for t, d in ev if t == "execution_error")
    assert (
        err["exception_type"] == "torch.OutOfMemoryError"
        and "out of memory" in err["exception_message"]
    )
    assert err["node_id"] == "3" and err["node_type"] == "KSampler"
    assert set(err) >= {"executed", "traceback", "current_inputs", "current_outputs", "timestamp"}
    entry = http.get(f"/history/{pid}").json()[pid]
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1][0] == "execution_error"
    assert entry["outputs"] == {}
    srv.fail_next_execution("RuntimeError", "boom", node_id="8")
    pid = submit(http, graph(seed=2))
    err = next(d for t, d in events_until_done(ws, pid) if t == "execution_error")
    assert (err["exception_type"], err["exception_message"], err["node_id"]) == (
        "RuntimeError",
        "boom",
        "8",
    )
    assert "3" in err["executed"]


def test_hang_and_interrupt(srv: FakeComfyUI, http: httpx.Client, ws: websocket.WebSocket) -> None:
    http.post("/interrupt")  # idle: no effect on the next run
    srv.hang_next()
    pid = submit(http, graph())
    srv.wait_for_executions(1, TIMEOUT, finished=False)
    assert http.post("/interrupt", json={"prompt_id": "someone-else"}).status_code == 200
    assert http.get(f"/history/{pid}").json() == {}
    assert http.get("/prompt").json() == {"exec_info": {"queue_remaining": 1}}
    r = http.post("/interrupt", json={"prompt_id": pid})
    assert r.status_code == 200 and r.content == b""
    ev = events_until_done(ws, pid)
    assert core_types(ev)[-3:] == ["execution_interrupted", "status", "executing"]
    data = next(d for t, d in ev if t == "execution_interrupted")
    assert data["node_id"] == "3" and data["prompt_id"] == pid
    entry = http.get(f"/history/{pid}").json()[pid]
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert srv.interrupts == 3
    assert srv.executions[0].interrupted


def test_http_faults(srv: FakeComfyUI, http: httpx.Client) -> None:
    srv.fail_next(503, count=2)
    r = http.post("/prompt", json={"prompt": graph()})
    assert r.status_code == 503 and r.text == "503 Internal Server Error"
    assert http.post("/api/prompt", json={"prompt": graph()}).status_code == 503
    srv.fail_next(500, {"error": "x"}, path_suffix="/system_stats")
    assert http.get("/system_stats").json() == {"error": "x"}
    srv.drop_next()
    with pytest.raises(httpx.RemoteProtocolError):
        http.post("/prompt", json={"prompt": graph()})
    assert srv.executions == []  # none of the faulted POSTs was queued
    assert [c.status for c in srv.calls if c.path.endswith("/prompt")] == [503, 503, -1]
    pid = submit(http, graph())
    assert srv.wait_for_history(pid, TIMEOUT)["status"]["status_str"] == "success"


def test_hang_release(srv: FakeComfyUI, http: httpx.Client) -> None:
    srv.hang_next()
    pid = submit(http, graph())
    srv.wait_for_executions(1, TIMEOUT, finished=False)
    srv.release()
    assert srv.wait_for_history(pid, TIMEOUT)["status"]["status_str"] == "success"


def test_drop_ws_mid_run_keeps_history(
    srv: FakeComfyUI, http: httpx.Client, ws: websocket.WebSocket
) -> None:
    srv.drop_ws_next_run()
    pid = submit(http, graph())
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        events_until_done(ws, pid)
    assert srv.wait_for_history(pid, TIMEOUT)["status"]["status_str"] == "success"


def test_history_delay_race(srv: FakeComfyUI, http: httpx.Client, ws: websocket.WebSocket) -> None:
    srv.history_delay = 0.5
    pid = submit(http, graph())
    while True:
        msg = ws.recv()
        if isinstance(msg, str) and json.loads(msg)["type"] == "execution_success":
            break
    assert http.get(f"/history/{pid}").json() == {}  # the race of B.9
    events_until_done(ws, pid)
    assert pid in http.get(f"/history/{pid}").json()  # written before the final executing


def test_reconnect_mid_run_gets_current_node(
    srv: FakeComfyUI, http: httpx.Client, ws: websocket.WebSocket
) -> None:
    srv.hang_next()
    submit(http, graph())
    srv.wait_for_executions(1, TIMEOUT, finished=False)
    ws.close()
    again = websocket.create_connection(srv.ws_url("c1"), timeout=TIMEOUT)
    assert json.loads(again.recv())["type"] == "status"
    msg = json.loads(again.recv())
    assert msg == {"type": "executing", "data": {"node": "3"}}
    srv.release()
    again.close()


# ---------------------------------------------------------------- queue and history


def test_queue_priority_delete_clear(srv: FakeComfyUI, http: httpx.Client) -> None:
    srv.hang_next()
    running = submit(http, graph(seed=0))
    srv.wait_for_executions(1, TIMEOUT, finished=False)
    ids = {n: submit(http, graph(seed=n), number=n) for n in (5, 1, 3, 7)}
    q = http.get("/queue").json()
    assert q["queue_running"][0][1] == running and len(q["queue_running"][0]) == 5
    assert sorted(item[0] for item in q["queue_pending"]) == [1, 3, 5, 7]
    assert http.post("/queue", json={"delete": [ids[7]]}).status_code == 200
    assert http.get("/prompt").json()["exec_info"]["queue_remaining"] == 4
    srv.release()
    srv.wait_for_executions(4, TIMEOUT)
    assert [e.prompt_id for e in srv.executions] == [running, ids[1], ids[3], ids[5]]
    srv.hang_next()
    submit(http, graph(seed=50))
    srv.wait_for_executions(5, TIMEOUT, finished=False)
    submit(http, graph(seed=51))
    assert http.post("/api/queue", json={"clear": True}).status_code == 200
    assert http.get("/queue").json()["queue_pending"] == []
    srv.release()


def test_queued_prompts_run_one_after_another_with_their_own_events(
    srv: FakeComfyUI, http: httpx.Client, ws: websocket.WebSocket
) -> None:
    srv.hang_next()
    first = submit(http, graph(seed=61))
    srv.wait_for_executions(1, TIMEOUT, finished=False)
    second = submit(http, graph(seed=62))
    third = submit(http, graph(seed=63))
    assert srv.queue_ids() == ([first], [second, third])
    # An interrupt naming a queued prompt does nothing; a delete removes pending prompts only.
    http.post("/interrupt", json={"prompt_id": second})
    assert http.post("/queue", json={"delete": [third, first]}).status_code == 200
    assert srv.queue_ids() == ([first], [second])
    assert srv.deleted == [third] and srv.interrupted_ids == [second]
    srv.release()
    events = events_until_done(ws, second)
    ends = [
        (t, d["prompt_id"])
        for t, d in events
        if t in ("execution_start", "execution_success") or (t == "executing" and not d["node"])
    ]
    assert ends == [
        ("execution_start", first),
        ("execution_success", first),
        ("executing", first),
        ("execution_start", second),
        ("execution_success", second),
        ("executing", second),
    ]
    a, b = srv.wait_for_executions(2, TIMEOUT)
    assert (a.prompt_id, b.prompt_id) == (first, second)
    assert a.status_str == b.status_str == "success"
    assert a.ended is not None and b.submitted < a.ended <= b.started
    assert srv.submitted[third] > 0 and http.get(f"/history/{third}").json() == {}
    assert len(srv.executions) == 2


def test_interrupt_stops_only_the_running_prompt(srv: FakeComfyUI, http: httpx.Client) -> None:
    srv.hang_next()
    first = submit(http, graph(seed=64))
    srv.wait_for_executions(1, TIMEOUT, finished=False)
    second = submit(http, graph(seed=65))
    http.post("/interrupt", json={"prompt_id": first})
    a, b = srv.wait_for_executions(2, TIMEOUT)
    assert (a.prompt_id, a.interrupted, a.status_str) == (first, True, "error")
    assert (b.prompt_id, b.interrupted, b.status_str) == (second, False, "success")
    assert srv.queue_ids() == ([], [])


def test_history_listing_and_delete(srv: FakeComfyUI, http: httpx.Client) -> None:
    pids = [submit(http, graph(seed=i)) for i in range(3)]
    srv.wait_for_executions(3, TIMEOUT)
    assert list(http.get("/history").json()) == pids
    assert list(http.get("/history", params={"max_items": 2}).json()) == pids[1:]
    assert list(http.get("/history", params={"max_items": 1, "offset": 0}).json()) == pids[:1]
    assert http.post("/history", json={"delete": [pids[0]]}).status_code == 200
    assert list(http.get("/history").json()) == pids[1:]
    http.post("/history", json={"clear": True})
    assert http.get("/history").json() == {}
    # reusing a prompt_id overwrites the entry
    submit(http, graph(seed=9), prompt_id="same")
    submit(http, graph(seed=10), prompt_id="same")
    srv.wait_for_executions(5, TIMEOUT)
    assert list(http.get("/history").json()) == ["same"]


def test_cache_reuses_outputs(
    srv: FakeComfyUI, http: httpx.Client, ws: websocket.WebSocket
) -> None:
    first = submit(http, graph())
    events_until_done(ws, first)
    again = submit(http, graph())
    ev = events_until_done(ws, again)
    cached = next(d for t, d in ev if t == "execution_cached")
    assert sorted(cached["nodes"]) == sorted(graph())
    assert [d["node"] for t, d in ev if t == "executing"] == [None]
    assert [d["node"] for t, d in ev if t == "executed"] == ["9"]
    assert "progress" not in {t for t, _ in ev}
    h1 = http.get(f"/history/{first}").json()[first]["outputs"]
    h2 = http.get(f"/history/{again}").json()[again]["outputs"]
    assert h1 == h2
    # a new prefix re-runs only the save node and writes a new file
    third = submit(http, graph(prefix="other"))
    ev = events_until_done(ws, third)
    assert [d["node"] for t, d in ev if t == "executing"] == ["9", None]
    # a new seed re-runs the sampler onwards
    fourth = submit(http, graph(seed=2))
    ev = events_until_done(ws, fourth)
    assert [d["node"] for t, d in ev if t == "executing"] == ["3", "8", "9", None]
    names = http.get(f"/history/{fourth}").json()[fourth]["outputs"]["9"]["images"][0]["filename"]
    assert names == "ComfyUI_00002_.png"
    # POST /free with free_memory drops the cache
    http.post("/free", json={"unload_models": True, "free_memory": True})
    fifth = submit(http, graph(seed=2))
    assert (
        next(d for t, d in events_until_done(ws, fifth) if t == "execution_cached")["nodes"] == []
    )


def test_restart_wipes_queue_and_history(
    srv: FakeComfyUI, http: httpx.Client, ws: websocket.WebSocket
) -> None:
    done = submit(http, graph())
    events_until_done(ws, done)
    srv.hang_next()
    running = submit(http, graph(seed=3))
    srv.wait_for_executions(2, TIMEOUT, finished=False)
    submit(http, graph(seed=4))
    srv.restart()
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while True:
            ws.recv()
    assert http.get("/history").json() == {}
    assert http.get(f"/history/{running}").json() == {}
    assert http.get("/queue").json() == {"queue_running": [], "queue_pending": []}
    assert srv.restarts == 1
    pid = submit(http, graph(seed=3))
    assert srv.wait_for_history(pid, TIMEOUT)["status"]["status_str"] == "success"


# ---------------------------------------------------------------- readiness and introspection


def test_not_listening_until_ready() -> None:
    with FakeComfyUI(execution_seconds=0, ready=False) as s:
        with pytest.raises(httpx.ConnectError):
            httpx.get(s.url + "/system_stats")
        s.set_ready(True)
        assert httpx.get(s.url + "/system_stats").status_code == 200
        s.set_ready(False)
        with pytest.raises(httpx.ConnectError):
            httpx.get(s.url + "/system_stats")


def test_object_info_and_stats(http: httpx.Client) -> None:
    info = http.get("/object_info").json()
    for cls in ("CheckpointLoaderSimple", "CLIPTextEncode", "EmptyLatentImage", "KSampler", "VAEDecode",
                "SaveImage", "LoadImage", "PreviewImage"):  # fmt: skip
        assert cls in info
    assert info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0] == [
        "v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors"]  # fmt: skip
    assert info["SaveImage"]["output_node"] is True
    one = http.get("/api/object_info/KSampler").json()
    assert list(one) == ["KSampler"] and one["KSampler"]["output"] == ["LATENT"]
    stats = http.get("/system_stats").json()
    assert {"os", "comfyui_version", "python_version", "pytorch_version"} <= set(stats["system"])
    assert http.get("/features").json()["supports_preview_metadata"] is True


def test_graph_is_not_mutated(srv: FakeComfyUI, http: httpx.Client) -> None:
    g = graph()
    snapshot = copy.deepcopy(g)
    pid = submit(http, g)
    assert srv.wait_for_history(pid, TIMEOUT)["prompt"][2] == snapshot
