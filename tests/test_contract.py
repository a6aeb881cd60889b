"""Unit tests of the shared task contract (agent/contract.py): pure functions, no AWS."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sdfleet.agent import contract
from sdfleet.agent.contract import ContractError, PoisonMessage, RuntimeInfo
from sdfleet.agent.held import queue_wait_ms

SD15 = RuntimeInfo("sd15", contract.SDWEBUI, model_filename="v1-5-pruned-emaonly.safetensors")
DYN = RuntimeInfo("sdxl-dyn", contract.SDWEBUI, dynamic_model=True)
FLUX = RuntimeInfo("flux", contract.COMFYUI)
RUNTIMES = [SD15, DYN, FLUX]


def raises(code: str, field: str | None, fn: Any, *args: Any, **kwargs: Any) -> ContractError:
    with pytest.raises(ContractError) as info:
        fn(*args, **kwargs)
    assert (info.value.code, info.value.field) == (code, field), info.value.to_body()
    return info.value


# --------------------------------------------------------------------------------------------
# Prefixes, ids, keys


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ""),
        ("", ""),
        ("/", ""),
        ("a", "a"),
        ("/a/b/", "a/b"),
        ("//a///b//c", "a/b/c"),
        ("team-1/2026-11-25", "team-1/2026-11-25"),
        ("a/.../b", "a/.../b"),  # only '.' and '..' are traversal
        ("a..b/c.", "a..b/c."),
        ("\u00e9t\u00e9/\u65e5\u672c", "\u00e9t\u00e9/\u65e5\u672c"),
        ("p" * contract.MAX_PREFIX_CHARS, "p" * contract.MAX_PREFIX_CHARS),
        ("\u00e9" * (contract.MAX_PREFIX_CHARS // 2), "\u00e9" * (contract.MAX_PREFIX_CHARS // 2)),
    ],
)
def test_normalise_prefix_accepts(raw: Any, expected: str) -> None:
    assert contract.normalise_prefix(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("..", "invalid_prefix"),
        ("a/../b", "invalid_prefix"),
        ("/../etc", "invalid_prefix"),
        ("a/./b", "invalid_prefix"),
        ("p" * (contract.MAX_PREFIX_CHARS + 1), "invalid_prefix"),
        ("\u00e9" * (contract.MAX_PREFIX_CHARS // 2 + 1), "invalid_prefix"),  # > 512 bytes
        ("a\x00b", "invalid_prefix"),
        ("a\nb", "invalid_prefix"),
        ("a\x7fb", "invalid_prefix"),
        ("a\\..\\b", "invalid_prefix"),
        ("\ud800", "invalid_prefix"),
        (5, "invalid_type"),
        (["a"], "invalid_type"),
    ],
)
def test_normalise_prefix_rejects(raw: Any, code: str) -> None:
    raises(code, "x.prefix", contract.normalise_prefix, raw, "x.prefix")


@pytest.mark.parametrize("value", ["a", "A-z_09", "x" * 64, "123e4567-e89b-12d3-a456-426614174000"])
def test_valid_ids(value: str) -> None:
    assert contract.validate_task_id(value, "id") == value


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", "invalid_id"),
        ("x" * 65, "invalid_id"),
        ("a b", "invalid_id"),
        ("a/b", "invalid_id"),
        ("a.b", "invalid_id"),
        ("abc\n", "invalid_id"),  # '$' would have matched before the newline
        ("\u00e9", "invalid_id"),
        (12, "invalid_type"),
        (None, "invalid_type"),
        (["a"], "invalid_type"),
    ],
)
def test_invalid_ids(value: Any, code: str) -> None:
    raises(code, "id", contract.validate_task_id, value, "id")


def test_generated_ids_follow_the_id_rules() -> None:
    ids = {contract.new_task_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(contract.ID_PATTERN.match(i) for i in ids)


def test_key_builders() -> None:
    assert contract.task_key_prefix("", "t1") == "t1"
    assert contract.task_key_prefix("a/b", "t1") == "a/b/t1"
    assert contract.output_location("bkt", "a/b", "t1") == "s3://bkt/a/b/t1"
    assert contract.output_location("bkt", "", "t1") == "s3://bkt/t1"
    rid = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"  # an API Gateway request id
    assert contract.request_key("a", "t1", rid) == f"a/t1/{rid}.request.json"
    assert contract.request_key("", "t1", rid) == f"t1/{rid}.request.json"
    assert contract.result_key("a", "t1") == "a/t1/t1.out"
    assert contract.image_key("a", "t1", 2, "png") == "a/t1/t1-2.png"
    assert contract.image_key("", "t1", 0, "webp") == "t1/t1-0.webp"


def test_longest_prefix_and_id_fit_an_s3_key() -> None:
    prefix = contract.normalise_prefix("\u00e9" * (contract.MAX_PREFIX_CHARS // 2))
    key = contract.request_key(prefix, "x" * 64, "r" * 64)
    assert len(key.encode("utf-8")) <= 1024


def test_parse_s3_uri() -> None:
    assert contract.parse_s3_uri("s3://bkt/a/b.json") == ("bkt", "a/b.json")
    for bad in ("http://bkt/a", "s3://bkt", "s3://bkt/", "s3:///key", "bkt/key"):
        with pytest.raises(ValueError):
            contract.parse_s3_uri(bad)


# --------------------------------------------------------------------------------------------
# Runtimes and JSON


def test_runtime_info_round_trip() -> None:
    for runtime in RUNTIMES:
        assert RuntimeInfo.from_json(runtime.to_json()) == runtime
    loaded = contract.load_runtimes(json.dumps([r.to_json() for r in RUNTIMES]))
    assert loaded == RUNTIMES


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[]", "non-empty"),
        ("{}", "non-empty"),
        ('[{"type": "sdwebui"}]', "string name"),
        ('["sd15"]', "string name"),
        ('[{"name": "a", "type": "comfy"}]', "'comfy' is not one of sdwebui, comfyui"),
        ('[{"name": "a", "type": "sdwebui", "modelFilename": 3}]', "modelFilename"),
        ('[{"name": "a", "type": "comfyui"}, {"name": "a", "type": "comfyui"}]', "duplicate"),
    ],
)
def test_load_runtimes_rejects(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        contract.load_runtimes(raw)


@pytest.mark.parametrize(
    "raw",
    [
        '{"a": NaN}',
        '{"a": Infinity}',
        "[-Infinity]",
        '{"a": 1e999}',
        '{"a": -1e400}',
        "9" * 5000,  # Python's int digit limit
        "[" * 100_000 + "]" * 100_000,
        "[" * (contract.MAX_JSON_DEPTH + 1) + "]" * (contract.MAX_JSON_DEPTH + 1),
        '{"a": ',
        b'{"a": "\xff"}',
    ],
)
def test_loads_strict_rejects_non_standard_or_hostile_json(raw: str | bytes) -> None:
    with pytest.raises(ValueError):
        contract.loads_strict(raw)
    raises("invalid_json", None, contract.parse_json_body, raw)


def test_loads_strict_accepts_standard_json() -> None:
    depth = contract.MAX_JSON_DEPTH
    assert contract.loads_strict("[" * depth + "]" * depth) is not None
    assert contract.loads_strict('{"a": 1.5e300, "b": -0.0, "c": 12345678901234567890}') == {
        "a": 1.5e300,
        "b": -0.0,
        "c": 12345678901234567890,
    }
    # Duplicate keys: the last one wins.
    assert contract.loads_strict('{"a": 1, "a": 2}') == {"a": 2}


def test_parse_json_body_limits() -> None:
    raises("invalid_json", None, contract.parse_json_body, None)
    raises("invalid_json", None, contract.parse_json_body, "  ")
    raises("invalid_json", None, contract.parse_json_body, b"")
    err = raises(
        "payload_too_large", None, contract.parse_json_body, "x" * (contract.MAX_BODY_BYTES + 1)
    )
    assert err.status == 413
    # A lone surrogate in the text must not crash the size check.
    assert contract.parse_json_body('{"a": "\ud800"}') == {"a": "\ud800"}
    # Size counts UTF-8 bytes, not characters.
    chars = contract.MAX_BODY_BYTES // 2 + 1
    raises("payload_too_large", None, contract.parse_json_body, '"' + "\u00e9" * chars + '"')


# --------------------------------------------------------------------------------------------
# v1alpha2 tasks


def v2(runtime: str, tasktype: str, content: Any, **meta: Any) -> dict[str, Any]:
    return {
        "task": {"metadata": {"runtime": runtime, "tasktype": tasktype, **meta}, "content": content}
    }


def test_parse_v1alpha2_builds_the_task() -> None:
    body = v2("sd15", "text-to-image", {"prompt": "p"}, id="t-1", prefix="/a/", context=[1])
    task = contract.parse_v1alpha2(body, RUNTIMES)
    assert task.metadata == contract.TaskMetadata("t-1", "sd15", "text-to-image", "a", [1])
    assert task.content == {"prompt": "p"}
    assert task.to_message() == {
        "metadata": {
            "id": "t-1",
            "runtime": "sd15",
            "tasktype": "text-to-image",
            "prefix": "a",
            "context": [1],
        },
        "content": {"prompt": "p"},
    }
    assert task.message_attributes() == {
        "runtime": {"DataType": "String", "StringValue": "sd15"},
        "tasktype": {"DataType": "String", "StringValue": "text-to-image"},
    }
    assert json.loads(contract.encode_message(task)) == task.to_message()
    assert contract.message_size(task.to_message()) == len(
        json.dumps(contract.encode_message(task))
    )


def test_top_level_shape_errors() -> None:
    raises("invalid_type", None, contract.parse_v1alpha2, None, RUNTIMES)
    raises("invalid_type", None, contract.parse_v1alpha2, [], RUNTIMES)
    raises("missing_field", "task", contract.parse_v1alpha2, {}, RUNTIMES)


def test_unknown_task_and_body_keys_are_refused_not_dropped() -> None:
    body = v2("sd15", "text-to-image", {"prompt": "p"})
    body["task"]["contents"] = {"steps": 10}  # a typo: its steps would silently not apply
    raises("unknown_field", "task.contents", contract.parse_v1alpha2, body, RUNTIMES)
    body = v2("sd15", "text-to-image", {"prompt": "p"})
    body["callback"] = "https://example.com/hook"
    err = raises("unknown_field", "callback", contract.parse_v1alpha2, body, RUNTIMES)
    assert "task" in err.message
    # Queue messages are held to the same shape.
    message = {**v2("flux", "pipeline", {"1": {"class_type": "X", "inputs": {}}})["task"]}
    message["metadata"]["id"] = "q-9"
    message["priority"] = 1
    with pytest.raises(PoisonMessage) as info:
        contract.parse_queue_message(json.dumps(message), FLUX)
    assert info.value.task_id == "q-9" and info.value.error is not None
    assert info.value.error.field == "task.priority"


def test_unknown_runtime_lists_known_and_cuts_the_echo() -> None:
    err = raises(
        "unknown_runtime",
        "task.metadata.runtime",
        contract.parse_v1alpha2,
        v2("z" * 10_000, "text-to-image", {}),
        RUNTIMES,
    )
    assert "sd15, sdxl-dyn, flux" in err.message
    assert len(err.message) < 200


def test_static_runtime_refuses_another_model_dynamic_accepts() -> None:
    content = {"override_settings": {"sd_model_checkpoint": "other.safetensors"}}
    raises(
        "model_not_served",
        "task.content.override_settings.sd_model_checkpoint",
        contract.parse_v1alpha2,
        v2("sd15", "text-to-image", content),
        RUNTIMES,
    )
    assert contract.parse_v1alpha2(v2("sdxl-dyn", "text-to-image", content), RUNTIMES)
    same = {"override_settings": {"sd_model_checkpoint": SD15.model_filename}}
    assert contract.parse_v1alpha2(v2("sd15", "text-to-image", same), RUNTIMES)


def test_requested_model_placements() -> None:
    assert contract.requested_model({}) is None
    assert contract.requested_model({"override_settings": {"sd_model_checkpoint": "a"}}) == "a"
    assert contract.requested_model({"alwayson_scripts": {"sd_model_checkpoint": "b"}}) == "b"
    assert contract.requested_model({"override_settings": {"sd_model_checkpoint": 3}}) is None


@pytest.mark.parametrize(
    ("tasktype", "content", "code", "field"),
    [
        ("extra-single-image", {}, "missing_field", "task.content.image"),
        ("extra-single-image", {"image": ""}, "invalid_type", "task.content.image"),
        ("extra-batch-images", {"imageList": []}, "missing_field", "task.content.imageList"),
        ("extra-batch-images", {"imageList": ["x"]}, "invalid_type", "task.content.imageList[0]"),
        (
            "extra-batch-images",
            {"imageList": [{"name": "a"}]},
            "invalid_type",
            "task.content.imageList[0].data",
        ),
        ("text-to-image", {"negative_prompt": 1}, "invalid_type", "task.content.negative_prompt"),
        (
            "text-to-image",
            {"override_settings": []},
            "invalid_type",
            "task.content.override_settings",
        ),
        (
            "text-to-image",
            {"alwayson_scripts": "cn"},
            "invalid_type",
            "task.content.alwayson_scripts",
        ),
    ],
)
def test_sdwebui_content_checks(tasktype: str, content: Any, code: str, field: str) -> None:
    raises(code, field, contract.parse_v1alpha2, v2("sd15", tasktype, content), RUNTIMES)


@pytest.mark.parametrize("flag", [False, "false", 0, "off"])
def test_a_task_cannot_leave_its_settings_on_the_server(flag: Any) -> None:
    # With override_settings_restore_afterwards false, SD WebUI keeps the task's settings
    # (a VAE, clip skip...) for every later task on that pod, other clients' included.
    content = {
        "override_settings": {"CLIP_stop_at_last_layers": 2},
        "override_settings_restore_afterwards": flag,
    }
    err = raises(
        "not_allowed",
        "task.content.override_settings_restore_afterwards",
        contract.parse_v1alpha2,
        v2("sd15", "text-to-image", content),
        RUNTIMES,
    )
    assert "later tasks" in err.message
    for ok in (True, "true", None):
        content["override_settings_restore_afterwards"] = ok
        assert contract.parse_v1alpha2(v2("sd15", "text-to-image", content), RUNTIMES)


@pytest.mark.parametrize(
    ("content", "code", "field"),
    [
        ({"prompt": []}, "invalid_type", "task.content.prompt"),
        ({"prompt": {}}, "invalid_type", "task.content.prompt"),
        ({"prompt": {"1": "KSampler"}}, "invalid_type", 'task.content.prompt["1"]'),
        (
            {"prompt": {"1": {"class_type": ""}}},
            "missing_field",
            'task.content.prompt["1"].class_type',
        ),
        (
            {"prompt": {"1": {"class_type": "X", "inputs": []}}},
            "invalid_type",
            'task.content.prompt["1"].inputs',
        ),
    ],
)
def test_comfyui_content_checks(content: Any, code: str, field: str) -> None:
    raises(code, field, contract.parse_v1alpha2, v2("flux", "pipeline", content), RUNTIMES)


def test_content_ref_from_a_client_is_refused_but_the_agent_accepts_it() -> None:
    task_obj = {
        "metadata": {"id": "t1", "runtime": "sd15", "tasktype": "text-to-image"},
        "content_ref": "s3://bkt/t1/request.json",
    }
    raises(
        "unknown_field", "task.content_ref", contract.parse_v1alpha2, {"task": task_obj}, RUNTIMES
    )
    task = contract.parse_task(task_obj, RUNTIMES)
    assert task.content is None and task.content_ref == "s3://bkt/t1/request.json"
    assert task.to_message()["content_ref"] == "s3://bkt/t1/request.json"
    assert "content" not in task.to_message()
    bad = dict(task_obj, content_ref="https://bkt/x")
    raises("invalid_content_ref", "task.content_ref", contract.parse_task, bad, RUNTIMES)


# --------------------------------------------------------------------------------------------
# v1alpha1 translation


def legacy(**scripts: Any) -> dict[str, Any]:
    return {
        "prompt": "a cat",
        "steps": 12,
        "alwayson_scripts": {"sd_model_checkpoint": SD15.model_filename, **scripts},
    }


def test_v1alpha1_maps_routing_fields() -> None:
    body = legacy(
        task="text-to-image",
        id_task="legacy-7",
        save_dir="/images//2026/",
        uid="user-9",
        controlnet={"args": [{"module": "canny"}]},
    )
    original = copy.deepcopy(body)
    task = contract.parse_v1alpha1(body, RUNTIMES)
    assert body == original  # the request is not modified
    assert task.api_version == "v1alpha1"
    assert task.metadata == contract.TaskMetadata(
        "legacy-7", "sd15", "text-to-image", "images/2026", "user-9"
    )
    assert task.content == {
        "prompt": "a cat",
        "steps": 12,
        # Only real always-on scripts stay: A1111 answers 422 to unknown ones.
        "alwayson_scripts": {"controlnet": {"args": [{"module": "canny"}]}},
        "override_settings": {"sd_model_checkpoint": SD15.model_filename},
    }


def test_v1alpha1_defaults_and_dynamic_routing() -> None:
    body = {"prompt": "x", "alwayson_scripts": {"sd_model_checkpoint": "dreamshaper_8"}}
    task = contract.parse_v1alpha1(body, RUNTIMES)
    assert task.metadata.runtime == "sdxl-dyn"
    assert task.metadata.tasktype == "text-to-image"
    assert contract.ID_PATTERN.match(task.metadata.id)
    assert task.metadata.prefix == "" and task.metadata.context is None
    assert contract.requested_model(task.content or {}) == "dreamshaper_8"


def test_v1alpha1_settings_merge_routing_checkpoint_wins() -> None:
    body = legacy(sd_vae="vae.pt", override_settings={"CLIP_stop_at_last_layers": 2})
    body["override_settings"] = {"sd_model_checkpoint": "ignored", "eta_noise_seed_delta": 31337}
    task = contract.parse_v1alpha1(body, RUNTIMES)
    assert task.content is not None
    assert task.content["override_settings"] == {
        "sd_model_checkpoint": SD15.model_filename,
        "eta_noise_seed_delta": 31337,
        "sd_vae": "vae.pt",
        "CLIP_stop_at_last_layers": 2,
    }


def test_v1alpha1_image_link_becomes_input_images() -> None:
    links = "https://x/a.png, https://x/b.png"
    img2img = contract.parse_v1alpha1(legacy(task="image-to-image", image_link=links), RUNTIMES)
    assert img2img.content is not None
    assert img2img.content["init_images"] == ["https://x/a.png", "https://x/b.png"]
    single = contract.parse_v1alpha1(legacy(task="extra-single-image", image_link=links), RUNTIMES)
    assert single.content is not None and single.content["image"] == "https://x/a.png"
    batch = contract.parse_v1alpha1(legacy(task="extra-batch-images", image_link=links), RUNTIMES)
    assert batch.content is not None
    assert [i["data"] for i in batch.content["imageList"]] == ["https://x/a.png", "https://x/b.png"]
    # Explicit init images win over the link.
    body = legacy(task="image-to-image", image_link=links)
    body["init_images"] = ["base64data"]
    explicit = contract.parse_v1alpha1(body, RUNTIMES)
    assert explicit.content is not None and explicit.content["init_images"] == ["base64data"]


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ([], "invalid_type", None),
        ({"prompt": "x"}, "missing_field", "alwayson_scripts"),
        ({"alwayson_scripts": []}, "missing_field", "alwayson_scripts"),
        ({"alwayson_scripts": {}}, "missing_field", "alwayson_scripts.sd_model_checkpoint"),
        (
            {"alwayson_scripts": {"sd_model_checkpoint": 5}},
            "invalid_type",
            "alwayson_scripts.sd_model_checkpoint",
        ),
        (legacy(task="pipeline"), "invalid_tasktype", "alwayson_scripts.task"),
        (legacy(id_task="a b"), "invalid_id", "alwayson_scripts.id_task"),
        (legacy(save_dir="../x"), "invalid_prefix", "alwayson_scripts.save_dir"),
        (legacy(task="image-to-image"), "missing_field", "init_images"),
        (
            legacy(task="image-to-image", image_link=3),
            "invalid_type",
            "alwayson_scripts.image_link",
        ),
        (
            legacy(task="image-to-image", image_link=" , "),
            "invalid_type",
            "alwayson_scripts.image_link",
        ),
        (legacy(override_settings=[1]), "invalid_type", "alwayson_scripts.override_settings"),
        (dict(legacy(), override_settings="x"), "invalid_type", "override_settings"),
        (dict(legacy(), prompt=["x"]), "invalid_type", "prompt"),
    ],
)
def test_v1alpha1_errors(body: Any, code: str, field: str | None) -> None:
    raises(code, field, contract.parse_v1alpha1, body, RUNTIMES)


def test_v1alpha1_without_a_matching_runtime_names_the_served_models() -> None:
    body = {"alwayson_scripts": {"sd_model_checkpoint": "sdxl.safetensors"}}
    err = raises(
        "unknown_model",
        "alwayson_scripts.sd_model_checkpoint",
        contract.parse_v1alpha1,
        body,
        [SD15, FLUX],
    )
    assert "v1-5-pruned-emaonly.safetensors" in err.message
    assert "sdxl.safetensors" in err.message


# --------------------------------------------------------------------------------------------
# Queue messages (agent side)


def _task_message(**meta: Any) -> dict[str, Any]:
    metadata = {"id": "q-1", "runtime": "flux", "tasktype": "pipeline", **meta}
    return {
        "metadata": metadata,
        "content": {"prompt": {"1": {"class_type": "KSampler", "inputs": {}}}},
    }


def _envelope(message: str) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "m-1",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:in",
            "Message": message,
            "Timestamp": "2026-11-25T12:00:00.000Z",
            "MessageAttributes": {"runtime": {"Type": "String", "Value": "flux"}},
        }
    )


def _nested(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


@pytest.mark.parametrize("wrap", [False, True])
def test_every_task_the_api_accepts_is_readable_from_the_queue(wrap: bool) -> None:
    # The queued message nests the content a level deeper than a v1alpha1 body (and a raw
    # message may wrap it in {"task": ...}): an accepted body at the depth limit must not
    # become an unreadable (id-less) poison message on the agent.
    body = legacy(task="text-to-image", id_task="deep-1")
    body["deep"] = _nested(contract.MAX_JSON_DEPTH - 1)  # the body: exactly the limit
    task = contract.parse_v1alpha1(contract.parse_json_body(json.dumps(body)), RUNTIMES)
    message = task.to_message()
    for raw in (_envelope(json.dumps(message)), json.dumps({"task": message} if wrap else message)):
        parsed = contract.parse_queue_message(raw, SD15)
        assert parsed.task.metadata.id == "deep-1"
        assert parsed.task.content == task.content


def test_parse_queue_message_envelope() -> None:
    parsed = contract.parse_queue_message(_envelope(json.dumps(_task_message())), FLUX)
    assert parsed.envelope is True
    assert parsed.published_at == "2026-11-25T12:00:00.000Z"
    assert parsed.task.metadata.id == "q-1"
    assert parsed.task.content == _task_message()["content"]


@pytest.mark.parametrize("stamp", [5, None, ["2026"], {"at": 1}])
def test_an_envelope_timestamp_that_is_not_text_is_ignored(stamp: Any) -> None:
    # A body sent straight to SQS may imitate the envelope: only a string is a timestamp
    # (the agent computes the queue wait from it).
    envelope = json.loads(_envelope(json.dumps(_task_message())))
    envelope["Timestamp"] = stamp
    parsed = contract.parse_queue_message(json.dumps(envelope), FLUX)
    assert parsed.published_at is None
    assert queue_wait_ms(parsed.published_at, None) is None


def test_parse_queue_message_raw_and_wrapped() -> None:
    raw = contract.parse_queue_message(json.dumps(_task_message()), FLUX)
    assert raw.envelope is False and raw.published_at is None
    assert raw.task.metadata.id == "q-1"
    wrapped = contract.parse_queue_message(json.dumps({"task": _task_message()}), FLUX)
    assert wrapped.task.metadata.id == "q-1"


def test_parse_queue_message_content_ref() -> None:
    message = {"metadata": _task_message()["metadata"], "content_ref": "s3://b/q-1/request.json"}
    parsed = contract.parse_queue_message(_envelope(json.dumps(message)), FLUX)
    assert parsed.task.content is None
    assert parsed.task.content_ref == "s3://b/q-1/request.json"


@pytest.mark.parametrize(
    ("body", "task_id"),
    [
        ("not json", None),
        ('{"a": NaN}', None),
        (_envelope("not json"), None),
        (json.dumps({"Type": "Notification", "Message": 5}), None),
        (json.dumps([1, 2]), None),
        # A recoverable id: the agent can report the failure for this task.
        (json.dumps(_task_message(runtime="sd15")), "q-1"),
        (_envelope(json.dumps(_task_message(tasktype="text-to-image"))), "q-1"),
        (json.dumps({"task": _task_message(extra=1)}), "q-1"),
        (json.dumps({"metadata": {"id": "q-1", "runtime": "flux", "tasktype": "pipeline"}}), "q-1"),
        # No usable id: missing (the agent never generates one) or invalid.
        (
            json.dumps({"metadata": {"runtime": "flux", "tasktype": "pipeline"}, "content": {}}),
            None,
        ),
        (json.dumps(_task_message(id="bad id")), None),
    ],
)
def test_parse_queue_message_poison(body: str, task_id: str | None) -> None:
    with pytest.raises(PoisonMessage) as info:
        contract.parse_queue_message(body, FLUX)
    assert info.value.task_id == task_id
    assert info.value.reason


def test_poison_carries_the_contract_error() -> None:
    with pytest.raises(PoisonMessage) as info:
        contract.parse_queue_message(json.dumps(_task_message(runtime="sd15")), FLUX)
    assert info.value.error is not None
    assert info.value.error.code == "unknown_runtime"
    assert info.value.error.field == "task.metadata.runtime"


# --------------------------------------------------------------------------------------------
# Notifications and errors


def test_build_notification_completed() -> None:
    body, attributes = contract.build_notification(
        runtime="sd15",
        task_id="t1",
        status=contract.STATUS_COMPLETED,
        image_urls=("s3://b/t1/t1-0.png",),
        output_url="s3://b/t1/t1.out",
        context={"k": 1},
        timings={"queue_ms": 5, "inference_ms": 1200},
        attempt=1,
    )
    assert body == {
        "runtime": "sd15",
        "id": "t1",
        "result": True,
        "status": "completed",
        "image_url": ["s3://b/t1/t1-0.png"],
        "output_url": "s3://b/t1/t1.out",
        "context": {"k": 1},
        "error": None,
        "timings": {"queue_ms": 5, "inference_ms": 1200},
        "attempt": 1,
    }
    assert attributes == {
        "runtime": {"DataType": "String", "StringValue": "sd15"},
        "status": {"DataType": "String", "StringValue": "completed"},
    }
    json.dumps(body)  # serialisable as is


def test_build_notification_failed() -> None:
    body, attributes = contract.build_notification(
        runtime="flux",
        task_id="t2",
        status=contract.STATUS_FAILED,
        error={"code": "inference_error", "message": "boom"},
    )
    assert body["result"] is False
    assert body["error"] == {"code": "inference_error", "message": "boom"}
    assert body["image_url"] == [] and body["timings"] == {} and body["output_url"] is None
    assert attributes["status"]["StringValue"] == "failed"


def test_contract_error_body() -> None:
    err = ContractError("invalid_id", "bad", "task.metadata.id")
    assert err.to_body() == {
        "error": {"code": "invalid_id", "message": "bad", "field": "task.metadata.id"}
    }
    assert err.status == 400
    assert str(err) == "task.metadata.id: bad"
