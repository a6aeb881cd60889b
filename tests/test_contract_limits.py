"""Per-runtime work limits and field caps in the shared contract (pure functions, no AWS)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sdfleet.agent import contract
from sdfleet.agent.contract import ContractError, Limits, PoisonMessage, RuntimeInfo

SD15 = RuntimeInfo("sd15", contract.SDWEBUI, model_filename="v1-5.safetensors")
FLUX = RuntimeInfo("flux", contract.COMFYUI)
RUNTIMES = [SD15, FLUX]
B64 = "iVBORw0KGgo="


def v2(runtime: str, tasktype: str, content: Any, **meta: Any) -> dict[str, Any]:
    return {
        "task": {"metadata": {"runtime": runtime, "tasktype": tasktype, **meta}, "content": content}
    }


def rejects(code: str, field: str | None, body: Any, runtimes: Any = RUNTIMES) -> ContractError:
    with pytest.raises(ContractError) as info:
        contract.parse_v1alpha2(body, runtimes)
    assert (info.value.code, info.value.field) == (code, field), info.value.to_body()
    assert info.value.status == 400
    return info.value


# --------------------------------------------------------------------------------------------
# Limits as data


def test_limits_defaults_and_json_round_trip() -> None:
    limits = Limits()
    assert limits.to_json() == {
        "maxSteps": 150,
        "maxPixels": 2048 * 2048,
        "maxImages": 8,
        "maxInputs": 8,
    }
    custom = Limits(max_steps=30, max_pixels=1024 * 1024, max_images=2, max_inputs=1)
    assert Limits.from_json(custom.to_json()) == custom
    assert Limits.from_json({"maxSteps": 40}) == Limits(max_steps=40)
    assert Limits.from_json(None) == Limits()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"maxSteps": 0}, "limits.maxSteps: must be a positive integer, got 0"),
        ({"maxPixels": -1}, "limits.maxPixels: must be a positive integer"),
        ({"maxImages": 2.5}, "limits.maxImages: must be a positive integer"),
        ({"maxInputs": True}, "limits.maxInputs: must be a positive integer"),
        ({"maxInputs": "8"}, "limits.maxInputs: must be a positive integer"),
        ({"max_steps": 10}, "limits.max_steps: unknown key"),
        ([1], "limits: must be an object"),
    ],
)
def test_limits_from_json_names_the_bad_key(data: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Limits.from_json(data)
    assert message in str(info.value)


def test_runtime_info_carries_limits() -> None:
    runtime = RuntimeInfo("a", contract.SDWEBUI, limits=Limits(max_steps=20))
    data = runtime.to_json()
    assert data["limits"] == {**Limits().to_json(), "maxSteps": 20}
    assert RuntimeInfo.from_json(data) == runtime
    # Older RUNTIMES values have no limits: the defaults apply.
    assert RuntimeInfo.from_json({"name": "a", "type": "sdwebui"}).limits == Limits()
    [loaded] = contract.load_runtimes(json.dumps([data]))
    assert loaded.limits.max_steps == 20


def test_load_runtimes_names_a_bad_limit() -> None:
    raw = json.dumps([{"name": "a", "type": "comfyui", "limits": {"maxPixels": 0}}])
    with pytest.raises(ValueError, match=r"RUNTIMES\[0\]\.limits\.maxPixels: must be a positive"):
        contract.load_runtimes(raw)


# --------------------------------------------------------------------------------------------
# SD WebUI


def test_steps_over_the_limit_names_field_and_limit() -> None:
    err = rejects("over_limit", "task.content.steps", v2("sd15", "text-to-image", {"steps": 1e9}))
    assert str(err) == (
        "task.content.steps: 1000000000.0 is over this runtime's limit of 150 (limits.maxSteps)"
    )
    err = rejects(
        "over_limit", "task.content.steps", v2("sd15", "text-to-image", {"steps": 1000000000})
    )
    assert str(err) == (
        "task.content.steps: 1000000000 is over this runtime's limit of 150 (limits.maxSteps)"
    )


@pytest.mark.parametrize(
    ("content", "code", "field"),
    [
        ({"steps": 151}, "over_limit", "task.content.steps"),
        ({"steps": "151"}, "over_limit", "task.content.steps"),  # A1111 coerces strings
        ({"steps": 0}, "invalid_number", "task.content.steps"),
        ({"steps": -5}, "invalid_number", "task.content.steps"),
        ({"steps": True}, "invalid_type", "task.content.steps"),
        ({"steps": "many"}, "invalid_type", "task.content.steps"),
        ({"steps": "nan"}, "invalid_number", "task.content.steps"),
        ({"steps": float("inf")}, "invalid_number", "task.content.steps"),
        ({"enable_hr": True, "hr_second_pass_steps": 500}, "over_limit", None),
        ({"width": 100000}, "invalid_number", "task.content.width"),
        ({"width": 4096, "height": 4096}, "over_limit", "task.content.width"),
        ({"width": -512, "height": -512}, "invalid_number", "task.content.width"),
        ({"width": 2**70, "height": 1}, "invalid_number", "task.content.width"),
        # Hires: 1024x1024 upscaled x4 is 4096x4096.
        ({"width": 1024, "height": 1024, "enable_hr": True, "hr_scale": 4}, "over_limit", None),
        ({"enable_hr": True, "hr_resize_x": 4096, "hr_resize_y": 4096}, "over_limit", None),
        ({"enable_hr": True, "hr_resize_x": 10**400}, "invalid_number", None),
        ({"enable_hr": True, "hr_scale": 1e300}, "invalid_number", None),
        ({"batch_size": 1e9}, "over_limit", "task.content.batch_size"),
        ({"batch_size": 3, "n_iter": 3}, "over_limit", "task.content.batch_size"),
        ({"n_iter": 0}, "invalid_number", "task.content.n_iter"),
        ({"steps": "0" * 70 + "151"}, "over_limit", "task.content.steps"),
    ],
)
def test_sdwebui_work_is_bounded(content: dict[str, Any], code: str, field: str | None) -> None:
    with pytest.raises(ContractError) as info:
        contract.parse_v1alpha2(v2("sd15", "text-to-image", content), RUNTIMES)
    assert info.value.code == code, info.value.to_body()
    if field is not None:
        assert info.value.field == field
    else:  # hires fields: whichever of them is named, it is a hires field
        assert str(info.value.field).startswith("task.content.hr_")


@pytest.mark.parametrize(
    "content",
    [
        {"steps": 150, "width": 2048, "height": 2048, "batch_size": 4, "n_iter": 2},
        {"steps": 20.0, "width": "512", "height": 768},
        {"width": 1024, "height": 1024, "enable_hr": True},  # x2 = 2048x2048
        {"enable_hr": True, "hr_resize_x": 2048, "hr_scale": 8},  # resize_x wins
        {"enable_hr": False, "hr_scale": 16, "hr_second_pass_steps": 0},
    ],
)
def test_sdwebui_work_within_limits_is_accepted(content: dict[str, Any]) -> None:
    task = contract.parse_v1alpha2(v2("sd15", "text-to-image", content), RUNTIMES)
    assert task.content == content


@pytest.mark.parametrize("tasktype", ["extra-single-image", "extra-batch-images"])
def test_extras_resize_to_a_size_is_bounded(tasktype: str) -> None:
    images = {"image": B64} if tasktype == "extra-single-image" else {"imageList": [{"data": B64}]}
    huge = {**images, "resize_mode": 1, "upscaling_resize_w": 100000, "upscaling_resize_h": 8}
    rejects("invalid_number", "task.content.upscaling_resize_w", v2("sd15", tasktype, huge))
    big = {**images, "resize_mode": "1", "upscaling_resize_w": 4096, "upscaling_resize_h": 4096}
    err = rejects("over_limit", "task.content.upscaling_resize_w", v2("sd15", tasktype, big))
    assert "(limits.maxPixels)" in err.message
    # pydantic reads Literal[0, 1] by dict lookup, where true is 1.
    rejects(
        "over_limit",
        "task.content.upscaling_resize_w",
        v2("sd15", tasktype, {**big, "resize_mode": True}),
    )
    # Mode 0 scales by upscaling_resize; the size fields are not used then.
    scale = {**images, "resize_mode": 0, "upscaling_resize_w": 4096, "upscaling_resize_h": 4096}
    assert contract.parse_v1alpha2(v2("sd15", tasktype, scale), RUNTIMES)


def test_input_images_are_counted_where_the_agent_fetches_them() -> None:
    unit = {"image": {"image": B64, "mask": B64}, "input_image": "https://x/y.png"}
    content = {
        "init_images": [B64] * 4,
        "mask": B64,
        "alwayson_scripts": {"ControlNet": {"args": [unit]}},
    }
    ok = contract.parse_v1alpha2(v2("sd15", "image-to-image", content), RUNTIMES)
    assert ok.content is not None
    content["init_images"] = [B64] * 5  # 5 + mask + 3 ControlNet images = 9
    err = rejects(
        "over_limit",
        "task.content.alwayson_scripts.ControlNet.args[0].input_image",
        v2("sd15", "image-to-image", content),
    )
    assert "9 input images is over this runtime's limit of 8 (limits.maxInputs)" in err.message
    rejects(
        "over_limit",
        "task.content.imageList[8].data",
        v2("sd15", "extra-batch-images", {"imageList": [{"data": B64}] * 9}),
    )


def test_an_overlong_input_url_is_refused() -> None:
    url = "https://example.com/" + "a" * contract.MAX_URL_CHARS
    err = rejects(
        "too_long",
        "task.content.init_images[0]",
        v2("sd15", "image-to-image", {"init_images": [url]}),
    )
    assert str(contract.MAX_URL_CHARS) in err.message


def test_limits_follow_the_runtime() -> None:
    small = RuntimeInfo("small", contract.SDWEBUI, limits=Limits(max_steps=10, max_images=1))
    err = rejects(
        "over_limit", "task.content.steps", v2("small", "text-to-image", {"steps": 11}), [small]
    )
    assert "limit of 10 (limits.maxSteps)" in err.message
    rejects(
        "over_limit",
        "task.content.batch_size",
        v2("small", "text-to-image", {"batch_size": 2}),
        [small],
    )
    big = RuntimeInfo("big", contract.SDWEBUI, limits=Limits(max_steps=500))
    assert contract.parse_v1alpha2(v2("big", "text-to-image", {"steps": 400}), [big])


def test_validate_content_without_limits_uses_the_defaults() -> None:
    with pytest.raises(ContractError) as info:
        contract.validate_content(contract.SDWEBUI, "text-to-image", {"steps": 151}, "content")
    assert info.value.field == "content.steps"


# --------------------------------------------------------------------------------------------
# ComfyUI


def comfy(**inputs: Any) -> dict[str, Any]:
    return {"prompt": {"5": {"class_type": "EmptyLatentImage", "inputs": inputs}}}


@pytest.mark.parametrize(
    ("content", "code", "field"),
    [
        (comfy(steps=151), "over_limit", 'task.content.prompt["5"].inputs.steps'),
        (comfy(steps="1000"), "over_limit", 'task.content.prompt["5"].inputs.steps'),
        (comfy(steps=-1), "invalid_number", 'task.content.prompt["5"].inputs.steps'),
        (comfy(width=100000, height=0), "invalid_number", 'task.content.prompt["5"].inputs.width'),
        (comfy(width=4096, height=2048), "over_limit", 'task.content.prompt["5"].inputs.width'),
        (comfy(batch_size=1e9), "over_limit", 'task.content.prompt["5"].inputs.batch_size'),
    ],
)
def test_comfyui_node_inputs_are_bounded(content: Any, code: str, field: str) -> None:
    rejects(code, field, v2("flux", "pipeline", content))


def test_comfyui_long_numeric_strings_are_still_numbers() -> None:
    # ComfyUI casts an INT input with int(): leading zeros must not hide 1000 steps.
    padded = "0" * 70 + "1000"
    rejects(
        "over_limit",
        'task.content.prompt["5"].inputs.steps',
        v2("flux", "pipeline", comfy(steps=padded)),
    )
    rejects(
        "over_limit",
        'task.content.prompt["5"].inputs.batch_size',
        v2("flux", "pipeline", comfy(batch_size="0" * 5000 + "9")),
    )


def test_comfyui_steps_add_up_across_nodes() -> None:
    # A thousand samplers at the per-node limit are a thousand times the work.
    graph = {str(i): {"class_type": "KSampler", "inputs": {"steps": 60}} for i in range(1, 4)}
    err = rejects(
        "over_limit",
        'task.content.prompt["3"].inputs.steps',
        v2("flux", "pipeline", {"prompt": graph}),
    )
    assert "180 steps in this workflow" in err.message
    del graph["3"]  # base + refiner within the limit
    assert contract.parse_v1alpha2(v2("flux", "pipeline", {"prompt": graph}), RUNTIMES)


def test_comfyui_images_add_up_across_nodes() -> None:
    graph = {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 4}},
        "2": {"class_type": "EmptySD3LatentImage", "inputs": {"batch_size": 5}},
    }
    err = rejects(
        "over_limit",
        'task.content.prompt["2"].inputs.batch_size',
        v2("flux", "pipeline", {"prompt": graph}),
    )
    assert "9 images in this workflow" in err.message


def test_comfyui_load_image_nodes_and_urls_count_as_inputs() -> None:
    graph = {
        str(i): {"class_type": "LoadImage", "inputs": {"image": f"https://x/{i}.png"}}
        for i in range(8)
    }
    assert contract.parse_v1alpha2(v2("flux", "pipeline", {"prompt": graph}), RUNTIMES)
    graph["8"] = {"class_type": "SomeUrlLoader", "inputs": {"url": "s3://bucket/k.png"}}
    err = rejects(
        "over_limit",
        'task.content.prompt["8"].inputs.url',
        v2("flux", "pipeline", {"prompt": graph}),
    )
    assert "(limits.maxInputs)" in err.message


def test_comfyui_links_and_text_are_not_numbers_to_judge() -> None:
    graph = {
        "1": {"class_type": "Primitive", "inputs": {"value": 20}},
        "2": {"class_type": "KSampler", "inputs": {"steps": ["1", 0], "width": "auto"}},
    }
    task = contract.parse_v1alpha2(v2("flux", "pipeline", {"prompt": graph}), RUNTIMES)
    assert task.content == {"prompt": graph}


# --------------------------------------------------------------------------------------------
# The agent enforces the runtime's limits on queue messages (tasks that bypass the API)


def test_parse_queue_message_enforces_the_runtime_limits() -> None:
    message = {
        "metadata": {"id": "d-1", "runtime": "sd15", "tasktype": "text-to-image"},
        "content": {"prompt": "x", "steps": 1_000_000_000, "width": 100000},
    }
    with pytest.raises(PoisonMessage) as info:
        contract.parse_queue_message(json.dumps(message), SD15)
    assert info.value.task_id == "d-1"
    assert info.value.error is not None and info.value.error.code == "over_limit"
    assert "limits.maxSteps" in info.value.reason
    strict = RuntimeInfo("sd15", contract.SDWEBUI, limits=Limits(max_steps=5))
    message["content"] = {"steps": 6}
    with pytest.raises(PoisonMessage, match=r"limit of 5 \(limits.maxSteps\)"):
        contract.parse_queue_message(json.dumps(message), strict)
    message["content"] = {"steps": 5}
    assert contract.parse_queue_message(json.dumps(message), strict).task.content == {"steps": 5}


# --------------------------------------------------------------------------------------------
# Field caps


def test_context_is_capped_at_8_kib_of_json() -> None:
    fits = "x" * (contract.MAX_CONTEXT_BYTES - 2)  # plus two quotes
    task = contract.parse_v1alpha2(v2("sd15", "text-to-image", {}, context=fits), RUNTIMES)
    assert task.metadata.context == fits
    err = rejects(
        "too_long", "task.metadata.context", v2("sd15", "text-to-image", {}, context=fits + "x")
    )
    assert err.message == "is 8193 bytes as JSON; at most 8192 are allowed"
    nested = {"user": ["\u00e9" * 2000]}  # escaped as \\u00e9: 6 bytes each
    rejects("too_long", "task.metadata.context", v2("sd15", "text-to-image", {}, context=nested))


def legacy(**scripts: Any) -> dict[str, Any]:
    return {
        "prompt": "x",
        "alwayson_scripts": {"sd_model_checkpoint": "v1-5.safetensors", **scripts},
    }


@pytest.mark.parametrize(
    ("scripts", "code", "field"),
    [
        ({"uid": "u" * 300_000}, "too_long", "alwayson_scripts.uid"),
        ({"sd_model_checkpoint": "m" * 300}, "too_long", "alwayson_scripts.sd_model_checkpoint"),
        ({"sd_vae": "v" * 300}, "too_long", "alwayson_scripts.sd_vae"),
        ({"sd_vae": 5}, "invalid_type", "alwayson_scripts.sd_vae"),
        ({"save_dir": "d" * 600}, "invalid_prefix", "alwayson_scripts.save_dir"),
        ({"id_task": "i" * 65}, "invalid_id", "alwayson_scripts.id_task"),
        ({"task": "t" * 300_000}, "invalid_tasktype", "alwayson_scripts.task"),
        (
            {"task": "image-to-image", "image_link": "https://x/" + "a" * 3000},
            "too_long",
            "alwayson_scripts.image_link",
        ),
        (
            {"task": "image-to-image", "image_link": ",".join(["https://x/a.png"] * 9)},
            "over_limit",
            "alwayson_scripts.image_link",
        ),
        ({"steps": 1}, None, None),
    ],
)
def test_legacy_string_fields_are_capped(scripts: Any, code: str | None, field: str | None) -> None:
    if code is None:
        assert contract.parse_v1alpha1(legacy(**scripts), RUNTIMES).metadata.runtime == "sd15"
        return
    with pytest.raises(ContractError) as info:
        contract.parse_v1alpha1(legacy(**scripts), RUNTIMES)
    assert (info.value.code, info.value.field) == (code, field), info.value.to_body()
    assert len(info.value.message) < 300


def test_legacy_limits_apply_to_the_translated_body() -> None:
    body = {**legacy(), "steps": 10**9}
    with pytest.raises(ContractError) as info:
        contract.parse_v1alpha1(body, RUNTIMES)
    assert (info.value.code, info.value.field) == ("over_limit", "steps")


def test_override_settings_names_are_capped() -> None:
    content = {"override_settings": {"sd_vae": "v" * 300}}
    rejects(
        "too_long",
        "task.content.override_settings.sd_vae",
        v2("sd15", "text-to-image", content),
    )


def test_content_ref_is_capped() -> None:
    message = {
        "metadata": {"id": "r-1", "runtime": "sd15", "tasktype": "text-to-image"},
        "content_ref": "s3://b/" + "k" * 3000,
    }
    with pytest.raises(PoisonMessage, match="content_ref"):
        contract.parse_queue_message(json.dumps(message), SD15)


# --------------------------------------------------------------------------------------------
# The final message size


def test_check_message_fits_counts_the_attributes_and_names_the_field() -> None:
    task = contract.parse_v1alpha2(v2("sd15", "text-to-image", {"prompt": "x"}), RUNTIMES)
    size = contract.check_message_fits(task)
    assert size == contract.message_size(task.to_message()) + contract.attributes_size(
        task.message_attributes()
    )
    # Only reachable if the caps were raised: metadata that does not fit even when offloaded.
    task.content, task.content_ref = None, "s3://b/k.request.json"
    task.metadata.context = "c" * contract.MAX_MESSAGE_BYTES
    with pytest.raises(ContractError) as info:
        contract.check_message_fits(task)
    assert (info.value.code, info.value.field, info.value.status) == (
        "payload_too_large",
        "task.metadata.context",
        413,
    )
    task.api_version = "v1alpha1"
    with pytest.raises(ContractError) as info:
        contract.check_message_fits(task)
    assert info.value.field == "alwayson_scripts.uid"


def test_request_ids_are_used_only_when_safe() -> None:
    rid = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    assert contract.safe_request_id(rid) == rid
    for bad in (None, "", "../x", "a/b", "x" * 65, 5, "id\n"):
        fresh = contract.safe_request_id(bad)
        assert fresh != bad and contract.REQUEST_ID_PATTERN.match(fresh)
    keys = {contract.request_key("p", "t1") for _ in range(20)}
    assert len(keys) == 20  # without a request id, every call gets its own key
    assert all(k.startswith("p/t1/") and k.endswith(".request.json") for k in keys)


@pytest.mark.parametrize(
    ("flag", "hires"), [(True, True), ("true", True), ("false", False), (0, False)]
)
def test_enable_hr_is_read_as_the_server_reads_it(flag: Any, hires: bool) -> None:
    content = {"width": 2048, "height": 2048, "enable_hr": flag}  # hires x2 = 4096x4096
    body = v2("sd15", "text-to-image", content)
    if hires:
        rejects("over_limit", "task.content.hr_scale", body)
    else:
        assert contract.parse_v1alpha2(body, RUNTIMES).content == content


def test_prose_that_starts_like_a_url_is_not_an_input() -> None:
    text = "https://example.com is where " + "the lighthouse stands " * 200
    graph = {str(i): {"class_type": "CLIPTextEncode", "inputs": {"text": text}} for i in range(10)}
    assert contract.parse_v1alpha2(v2("flux", "pipeline", {"prompt": graph}), RUNTIMES)
