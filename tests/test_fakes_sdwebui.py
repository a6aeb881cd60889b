"""Tests of the fake SD WebUI server: every route and knob over real HTTP."""

from __future__ import annotations

import base64
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from sdfleet.fakes._common import free_port
from sdfleet.fakes.images import make_png, png_pixels, png_size, png_text
from sdfleet.fakes.sdwebui import FakeSdWebUI

FAST = 0.05


@pytest.fixture
def srv() -> Iterator[FakeSdWebUI]:
    with FakeSdWebUI(inference_seconds=FAST) as s:
        yield s


@pytest.fixture
def client(srv: FakeSdWebUI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=srv.api_url, timeout=10) as c:
        yield c


def b64png(w: int = 64, h: int = 64, seed: int = 1) -> str:
    return base64.b64encode(make_png(w, h, seed)).decode()


def decode(images: list[str]) -> list[bytes]:
    return [base64.b64decode(i) for i in images]


# ---------------------------------------------------------------- images


def test_make_png_is_deterministic_and_valid() -> None:
    a = make_png(64, 32, 7, "hello")
    assert a == make_png(64, 32, 7, "hello")
    assert a != make_png(64, 32, 8, "hello")
    assert png_size(a) == (64, 32)
    assert png_text(a) == {"parameters": "hello"}
    assert len(png_pixels(a)) == 32 * (1 + 64 * 3)  # zlib checks the adler32 of the stitched stream
    assert png_pixels(a) != png_pixels(make_png(64, 32, 8))
    assert len(png_pixels(make_png(8, 4, 1))) == 4 * (1 + 8 * 3)
    assert png_text(make_png(8, 8, 1, "ünï")) == {"parameters": "ünï"}
    with pytest.raises(ValueError, match="width=0"):
        make_png(0, 8, 1)


def test_realistic_size_for_512() -> None:
    assert 300_000 < len(make_png(512, 512, 3)) < 700_000


# ---------------------------------------------------------------- txt2img


def test_txt2img_response_shape(srv: FakeSdWebUI, client: httpx.Client) -> None:
    r = client.post(
        "txt2img",
        json={"prompt": "a cat", "negative_prompt": "dog", "seed": 42, "batch_size": 2, "n_iter": 2,
              "width": 64, "height": 48, "steps": 20, "bogus_field": 1},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    d = r.json()
    assert isinstance(d["info"], str)
    info = json.loads(d["info"])
    assert info["seed"] == 42
    assert info["all_seeds"] == [42, 43, 44, 45]
    assert info["index_of_first_image"] == 0
    assert len(info["infotexts"]) == len(d["images"]) == 4
    imgs = decode(d["images"])
    for i, img in enumerate(imgs):
        assert png_size(img) == (64, 48)
        assert png_text(img)["parameters"] == info["infotexts"][i]
    assert "Seed: 43" in info["infotexts"][1]
    assert info["infotexts"][0].startswith("a cat\nNegative prompt: dog\nSteps: 20, Sampler: Euler")
    # parameters echoes the request with defaults filled and unknown fields dropped
    p = d["parameters"]
    assert p["prompt"] == "a cat" and p["cfg_scale"] == 7.0 and p["sampler_name"] is None
    assert "bogus_field" not in p
    assert p["sampler_index"] == "Euler"
    assert srv.generation_calls()[0].body["bogus_field"] == 1


def test_txt2img_defaults_and_random_seed(client: httpx.Client) -> None:
    d = client.post("txt2img", json={}).json()
    info = json.loads(d["info"])
    assert d["parameters"]["steps"] == 50
    assert info["seed"] >= 0 and info["all_seeds"] == [info["seed"]]
    assert png_size(decode(d["images"])[0]) == (512, 512)


def test_variation_seed_keeps_seed(client: httpx.Client) -> None:
    d = client.post(
        "txt2img", json={"seed": 9, "batch_size": 3, "subseed": 100, "subseed_strength": 0.5,
                         "width": 8, "height": 8},
    ).json()  # fmt: skip
    info = json.loads(d["info"])
    assert info["all_seeds"] == [9, 9, 9]
    assert info["all_subseeds"] == [100, 101, 102]


def test_grid_first_when_save_images(client: httpx.Client) -> None:
    d = client.post(
        "txt2img", json={"seed": 1, "batch_size": 2, "save_images": True, "width": 8, "height": 8}
    ).json()
    info = json.loads(d["info"])
    assert info["index_of_first_image"] == 1
    assert len(d["images"]) == 3 == len(info["infotexts"])
    assert png_size(decode(d["images"])[0]) == (16, 8)


def test_send_images_false(client: httpx.Client) -> None:
    d = client.post("txt2img", json={"send_images": False, "width": 8, "height": 8}).json()
    assert d["images"] == []
    assert len(json.loads(d["info"])["all_seeds"]) == 1


def test_image_size_knob() -> None:
    with FakeSdWebUI(inference_seconds=0, image_size=(16, 24)) as s:
        d = httpx.post(s.api_url + "txt2img", json={"width": 1024, "height": 1024}).json()
        assert png_size(decode(d["images"])[0]) == (16, 24)


# ---------------------------------------------------------------- validation


def test_422_on_wrong_types(srv: FakeSdWebUI, client: httpx.Client) -> None:
    r = client.post("txt2img", json={"prompt": ["a", "b"], "steps": "many", "width": None})
    assert r.status_code == 422
    detail = r.json()["detail"]
    by_field = {tuple(d["loc"]): d for d in detail}
    assert by_field[("body", "prompt")]["type"] == "type_error.str"
    assert by_field[("body", "steps")]["type"] == "type_error.integer"
    assert by_field[("body", "width")]["type"] == "type_error.none.not_allowed"
    assert srv.jobs == []  # nothing reached the GPU


def test_pydantic_v1_coercion(client: httpx.Client) -> None:
    d = client.post("txt2img", json={"steps": "7", "cfg_scale": 3, "seed": 5.0, "prompt": 12,
                                     "width": 8, "height": 8}).json()  # fmt: skip
    assert d["parameters"]["steps"] == 7 and d["parameters"]["cfg_scale"] == 3.0
    assert d["parameters"]["prompt"] == "12"


def test_422_on_bad_json_and_non_object(client: httpx.Client) -> None:
    r = client.post("txt2img", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "value_error.jsondecode"
    r = client.post("txt2img", json=[1, 2])
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]


def test_unknown_sampler_400_and_combined_names(client: httpx.Client) -> None:
    r = client.post("txt2img", json={"sampler_name": "Eulerish"})
    assert r.status_code == 400
    assert r.json() == {"error": "HTTPException", "detail": "Sampler not found", "body": "",
                        "errors": ""}  # fmt: skip
    r = client.post("txt2img", json={"sampler_name": "DPM++ 2M Karras", "width": 8, "height": 8})
    assert r.status_code == 200
    assert json.loads(r.json()["info"])["sampler_name"] == "DPM++ 2M"


def test_scripts_validation(client: httpx.Client) -> None:
    r = client.post("txt2img", json={"script_name": "nope"})
    assert r.status_code == 422 and r.json()["detail"] == "Script 'nope' not found"
    # legacy routing keys left under alwayson_scripts are rejected like upstream
    r = client.post("txt2img", json={"alwayson_scripts": {"sd_model_checkpoint": "x"}})
    assert r.status_code == 422
    assert r.json()["detail"] == "always on script sd_model_checkpoint not found"
    r = client.post("txt2img", json={"alwayson_scripts": {"x/y/z plot": {"args": []}}})
    assert r.status_code == 422
    r = client.post(
        "txt2img",
        json={"alwayson_scripts": {"controlnet": {"args": [{"image": b64png()}]}}, "width": 8,
              "height": 8, "script_name": "X/Y/Z plot"},
    )  # fmt: skip
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------- img2img


def test_img2img_requires_init_images(srv: FakeSdWebUI, client: httpx.Client) -> None:
    r = client.post("img2img", json={"prompt": "x"})
    assert r.status_code == 404
    assert r.json() == {"error": "HTTPException", "detail": "Init image not found", "body": "",
                        "errors": ""}  # fmt: skip
    assert srv.jobs == []


def test_img2img_ok_and_init_images_nulled(srv: FakeSdWebUI, client: httpx.Client) -> None:
    init = b64png()
    r = client.post(
        "img2img",
        json={"init_images": [init, "data:image/png;base64," + b64png(seed=2)], "batch_size": 2,
              "mask": b64png(seed=3), "width": 32, "height": 32, "seed": 1},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["parameters"]["init_images"] is None and d["parameters"]["mask"] is None
    assert len(d["images"]) == 2
    assert srv.generation_calls()[0].body["init_images"][0] == init
    r = client.post("img2img", json={"init_images": [init], "include_init_images": True,
                                     "width": 8, "height": 8})  # fmt: skip
    assert r.json()["parameters"]["init_images"] == [init]


def test_img2img_image_errors(client: httpx.Client) -> None:
    r = client.post("img2img", json={"init_images": ["https://example.com/a.png"]})
    assert r.status_code == 500 and r.json()["detail"] == "Requests not allowed"
    r = client.post("img2img", json={"init_images": ["bm90IGFuIGltYWdl"]})
    assert r.status_code == 500 and r.json()["detail"] == "Invalid encoded image"
    r = client.post("img2img", json={"init_images": [b64png(), b64png()], "batch_size": 1})
    assert r.status_code == 500 and r.json()["error"] == "RuntimeError"
    assert "bad number of images passed" in r.json()["errors"]


# ---------------------------------------------------------------- extras and png-info


def test_extras_single_and_batch(client: httpx.Client) -> None:
    r = client.post("extra-single-image", json={"image": b64png(16, 8), "upscaling_resize": 2})
    assert r.status_code == 200, r.text
    assert png_size(base64.b64decode(r.json()["image"])) == (32, 16)
    assert "html_info" in r.json()
    r = client.post(
        "extra-batch-images",
        json={"imageList": [{"data": b64png(8, 8), "name": "a"}, {"data": b64png(4, 4), "name": "b"}],
              "resize_mode": 1, "upscaling_resize_w": 20, "upscaling_resize_h": 10},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert [png_size(i) for i in decode(r.json()["images"])] == [(20, 10), (20, 10)]


def test_extras_validation(client: httpx.Client) -> None:
    r = client.post("extra-single-image", json={"image": b64png(), "gfpgan_visibility": 2})
    assert r.status_code == 422
    assert r.json()["detail"][0]["type"] == "value_error.number.not_le"
    r = client.post("extra-batch-images", json={"imageList": [{"name": "a"}]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "imageList", 0, "data"]
    r = client.post("extra-single-image", json={"image": b64png(), "upscaler_1": "Nope"})
    assert r.status_code == 500 and r.json()["error"] == "AssertionError"


def test_png_info_roundtrip(client: httpx.Client) -> None:
    d = client.post("txt2img", json={"prompt": "p", "seed": 3, "width": 8, "height": 8}).json()
    r = client.post("png-info", json={"image": d["images"][0]})
    assert r.status_code == 200
    body = r.json()
    assert body["info"] == json.loads(d["info"])["infotexts"][0]
    assert body["parameters"]["Seed"] == "3" and body["parameters"]["Size-1"] == "8"


# ---------------------------------------------------------------- models and options


def test_sd_models_and_options(client: httpx.Client) -> None:
    models = client.get("sd-models").json()
    assert {"title", "model_name", "hash", "sha256", "filename", "config"} <= set(models[0])
    assert models[0]["title"] == f"v1-5-pruned-emaonly.safetensors [{models[0]['hash']}]"
    assert models[2]["model_name"] == "anime_dreamshaper_8"
    opts = client.get("options").json()
    assert opts["sd_model_checkpoint"] == models[0]["title"]
    assert opts["sd_checkpoint_hash"] == models[0]["sha256"]


def test_options_unknown_model_500(srv: FakeSdWebUI, client: httpx.Client) -> None:
    r = client.post(
        "options", json={"sd_model_checkpoint": "missing.safetensors", "jpeg_quality": 1}
    )
    assert r.status_code == 500
    assert r.json() == {"error": "RuntimeError", "detail": "", "body": "",
                        "errors": "model 'missing.safetensors' not found"}  # fmt: skip
    assert srv.options["jpeg_quality"] == 80  # nothing changed
    r = client.post("options", json={"no_such_key": 1})
    assert r.status_code == 500 and r.json()["error"] == "KeyError"


def test_options_switch_by_aliases(srv: FakeSdWebUI, client: httpx.Client) -> None:
    for alias in ("sd_xl_base_1.0", "dreamshaper_8"):
        r = client.post("options", json={"sd_model_checkpoint": alias})
        assert r.status_code == 200 and r.json() is None
        assert client.get("options").json()["sd_model_checkpoint"].endswith("]")
    assert srv.model_loads == ["sd_xl_base_1.0.safetensors", "anime/dreamshaper_8.safetensors"]
    # naming the loaded model by another alias stores the alias, with no reload
    for alias in ("anime/dreamshaper_8.safetensors", "anime_dreamshaper_8"):
        assert client.post("options", json={"sd_model_checkpoint": alias}).status_code == 200
        assert client.get("options").json()["sd_model_checkpoint"] == alias
    assert len(srv.model_loads) == 2


def test_load_fails_still_200(srv: FakeSdWebUI, client: httpx.Client) -> None:
    srv.load_fails = True
    before = client.get("options").json()["sd_model_checkpoint"]
    r = client.post("options", json={"sd_model_checkpoint": "sd_xl_base_1.0.safetensors"})
    assert r.status_code == 200 and r.json() is None
    assert client.get("options").json()["sd_model_checkpoint"] == before


def test_unhashed_model_title_gains_hash_on_load() -> None:
    with FakeSdWebUI(
        inference_seconds=0, unhashed_models=["b.ckpt"], models=["a.ckpt", "b.ckpt"]
    ) as s:
        items = httpx.get(s.api_url + "sd-models").json()
        assert items[1]["title"] == "b.ckpt" and items[1]["hash"] is None
        httpx.post(s.api_url + "options", json={"sd_model_checkpoint": "b.ckpt"})
        items = httpx.get(s.api_url + "sd-models").json()
        assert items[1]["title"] == f"b.ckpt [{items[1]['hash']}]"


def test_refresh_checkpoints_shows_new_model(srv: FakeSdWebUI, client: httpx.Client) -> None:
    srv.add_model("new/model.safetensors")
    assert len(client.get("sd-models").json()) == 3
    r = client.post("options", json={"sd_model_checkpoint": "new/model.safetensors"})
    assert r.status_code == 500
    assert client.post("refresh-checkpoints").json() is None
    assert len(client.get("sd-models").json()) == 4
    assert (
        client.post("options", json={"sd_model_checkpoint": "new/model.safetensors"}).status_code
        == 200
    )


def test_unload_reload_and_memory(srv: FakeSdWebUI, client: httpx.Client) -> None:
    assert client.post("unload-checkpoint").json() == {}
    d = client.post("txt2img", json={"width": 8, "height": 8}).json()  # job reloads the weights
    assert json.loads(d["info"])["sd_model_name"] == "v1-5-pruned-emaonly"
    assert srv.model_loads == ["v1-5-pruned-emaonly.safetensors"]
    assert client.post("reload-checkpoint").json() == {}
    mem = client.get("memory").json()
    assert mem["ram"]["total"] > 0 and mem["cuda"]["events"]["oom"] == 0


def test_override_settings_for_one_job(srv: FakeSdWebUI, client: httpx.Client) -> None:
    d = client.post(
        "txt2img",
        json={"width": 8, "height": 8, "override_settings": {
            "sd_model_checkpoint": "sd_xl_base_1.0", "CLIP_stop_at_last_layers": 2}},
    ).json()  # fmt: skip
    info = json.loads(d["info"])
    assert info["sd_model_name"] == "sd_xl_base_1.0" and info["clip_skip"] == 2
    opts = client.get("options").json()
    assert opts["CLIP_stop_at_last_layers"] == 1
    assert opts["sd_model_checkpoint"].startswith("v1-5")
    # the next job reloads the configured checkpoint; an unknown override is dropped silently
    d = client.post("txt2img", json={"width": 8, "height": 8,
                                     "override_settings": {"sd_model_checkpoint": "nope"}}).json()  # fmt: skip
    assert json.loads(d["info"])["sd_model_name"] == "v1-5-pruned-emaonly"
    assert srv.model_loads == ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors"]


def test_first_job_pays_the_background_load() -> None:
    with FakeSdWebUI(inference_seconds=0, model_loaded_at_start=False, load_seconds=0.05) as s:
        t = time.monotonic()
        httpx.post(s.api_url + "txt2img", json={"width": 8, "height": 8})
        assert time.monotonic() - t >= 0.05
        assert s.model_loads == ["v1-5-pruned-emaonly.safetensors"]


# ---------------------------------------------------------------- lock, progress, interrupt


def test_generations_are_serialised_not_rejected(srv: FakeSdWebUI) -> None:
    srv.hang_next()
    with ThreadPoolExecutor(3) as pool:
        futs = [pool.submit(httpx.post, srv.api_url + "txt2img",
                            json={"width": 8, "height": 8, "seed": i}, timeout=10)
                for i in range(3)]  # fmt: skip
        srv.wait_generation_started()
        srv.wait_for_calls("txt2img", 3)
        # the two others are blocked on the lock, and non-locking routes still answer
        assert httpx.get(srv.api_url + "progress").json()["state"]["job_count"] == 1
        assert httpx.get(srv.api_url + "options").status_code == 200
        srv.release()
        assert [f.result().status_code for f in futs] == [200, 200, 200]
    jobs = sorted(srv.jobs, key=lambda j: j.started)
    for a, b in itertools.pairwise(jobs):
        assert a.ended is not None and a.ended <= b.started


def test_progress_moves_and_idle(srv: FakeSdWebUI, client: httpx.Client) -> None:
    idle = client.get("progress").json()
    assert idle["progress"] == 0 and idle["eta_relative"] == 0
    assert idle["state"]["job_count"] == 0
    srv.hang_next()
    fut = ThreadPoolExecutor(1).submit(
        httpx.post, srv.api_url + "txt2img",
        json={"steps": 10, "n_iter": 2, "width": 8, "height": 8, "force_task_id": "t1"}, timeout=10,
    )  # fmt: skip
    srv.wait_generation_started()
    p = client.get("progress", params={"skip_current_image": "true"}).json()
    assert p["state"]["sampling_steps"] == 10 and p["state"]["sampling_step"] == 5
    assert p["state"]["job_count"] == 2 and p["progress"] == pytest.approx(0.25)
    assert p["current_task"] == "t1" and p["current_image"] is None
    srv.release()
    assert fut.result().status_code == 200
    assert client.get("progress").json()["state"]["job_count"] == 0


def test_interrupt_returns_partial_200(srv: FakeSdWebUI, client: httpx.Client) -> None:
    srv.hang_next()
    fut = ThreadPoolExecutor(1).submit(
        httpx.post, srv.api_url + "txt2img",
        json={"n_iter": 3, "batch_size": 2, "width": 8, "height": 8, "seed": 1}, timeout=10,
    )  # fmt: skip
    srv.wait_generation_started()
    assert client.post("interrupt").json() == {}
    r = fut.result()
    assert r.status_code == 200
    d = r.json()
    assert len(d["images"]) == 2  # only the batch that was running
    assert len(json.loads(d["info"])["all_seeds"]) == 6
    assert srv.interrupts == 1 and srv.jobs[0].interrupted


def test_interrupt_when_idle_does_not_hit_next_job(srv: FakeSdWebUI, client: httpx.Client) -> None:
    client.post("interrupt")
    d = client.post("txt2img", json={"n_iter": 2, "width": 8, "height": 8}).json()
    assert len(d["images"]) == 2
    assert not srv.jobs[0].interrupted


def test_skip_abandons_current_batch(srv: FakeSdWebUI, client: httpx.Client) -> None:
    srv.hang_next()
    fut = ThreadPoolExecutor(1).submit(
        httpx.post, srv.api_url + "txt2img", json={"n_iter": 2, "width": 8, "height": 8}, timeout=10
    )
    srv.wait_generation_started()
    assert client.post("skip").json() is None
    srv.release()  # batch 2 is still hung; release it
    assert len(fut.result().json()["images"]) == 2
    assert srv.skips == 1


def test_hang_ends_on_stop() -> None:
    s = FakeSdWebUI(inference_seconds=0).start()
    s.hang_next()
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(httpx.post, s.api_url + "txt2img", json={}, timeout=10)
        s.wait_generation_started()
        t = time.monotonic()
        s.stop()
        assert time.monotonic() - t < 2
        with pytest.raises(httpx.HTTPError):
            fut.result().raise_for_status()


def test_options_switch_waits_for_running_job() -> None:
    with FakeSdWebUI(inference_seconds=0, load_seconds=0.01) as s:
        s.hang_next()
        with ThreadPoolExecutor(2) as pool:
            gen = pool.submit(
                httpx.post, s.api_url + "txt2img", json={"width": 8, "height": 8}, timeout=10
            )
            s.wait_generation_started()
            sw = pool.submit(httpx.post, s.api_url + "options",
                             json={"sd_model_checkpoint": "sd_xl_base_1.0"}, timeout=10)  # fmt: skip
            s.wait_for_calls("options", 1)
            assert not sw.done()
            s.release()
            assert gen.result().status_code == 200 and sw.result().status_code == 200
        opt_call = next(c for c in s.calls if c.path.endswith("options"))
        assert opt_call.locked_at is not None and s.jobs[0].ended is not None
        assert opt_call.locked_at >= s.jobs[0].ended


# ---------------------------------------------------------------- fault knobs


def test_fail_next_default_oom_then_success(srv: FakeSdWebUI, client: httpx.Client) -> None:
    srv.fail_next(500)
    r = client.post("txt2img", json={"width": 8, "height": 8})
    assert r.status_code == 500
    assert r.json()["error"] == "OutOfMemoryError" and set(r.json()) == {
        "error",
        "detail",
        "body",
        "errors",
    }
    assert client.post("txt2img", json={"width": 8, "height": 8}).status_code == 200
    assert [j.failed for j in srv.jobs] == [500, None]


def test_fail_next_custom_count_and_path(srv: FakeSdWebUI, client: httpx.Client) -> None:
    srv.fail_next(503, {"error": "x"}, count=2, path_suffix="sd-models")
    assert client.get("options").status_code == 200
    assert client.get("sd-models").status_code == 503
    assert client.get("sd-models").json() == {"error": "x"}
    assert client.get("sd-models").status_code == 200
    srv.fail_next(422)
    assert client.post("img2img", json={"init_images": [b64png()]}).status_code == 422


def test_drop_next_closes_mid_response(srv: FakeSdWebUI, client: httpx.Client) -> None:
    srv.drop_next()
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("txt2img", json={"width": 8, "height": 8})
    assert srv.generation_calls()[0].status == -1
    assert len(srv.jobs) == 1  # the job did run on the GPU
    assert client.post("txt2img", json={"width": 8, "height": 8}).status_code == 200


def test_set_ready_and_unknown_routes(srv: FakeSdWebUI) -> None:
    with httpx.Client(base_url=srv.url) as c:
        srv.set_ready(False)
        assert c.get("/").status_code == 200
        r = c.get("/sdapi/v1/sd-models")
        assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
        srv.set_ready(True)
        assert c.get("/sdapi/v1/sd-models").status_code == 200
        assert c.get("/sdapi/v1/nope").json() == {"detail": "Not Found"}
        r = c.get("/sdapi/v1/txt2img")
        assert r.status_code == 405 and r.json() == {"detail": "Method Not Allowed"}
        assert c.get("/sdapi/v1/samplers").json()[0]["name"] == "DPM++ 2M"


def test_not_listening_until_started() -> None:
    port = free_port()
    s = FakeSdWebUI(inference_seconds=0, port=port)
    assert s.url == f"http://127.0.0.1:{port}"
    with pytest.raises(httpx.ConnectError):
        httpx.get(s.api_url + "sd-models")
    with s:
        assert httpx.get(s.api_url + "sd-models").status_code == 200


def test_auth() -> None:
    with FakeSdWebUI(inference_seconds=0, api_auth=("u", "p")) as s:
        r = httpx.get(s.api_url + "options")
        assert r.status_code == 401 and r.json()["detail"] == "Not authenticated"
        r = httpx.get(s.api_url + "options", auth=("u", "bad"))
        assert r.status_code == 401 and r.json()["detail"] == "Incorrect username or password"
        assert httpx.get(s.api_url + "options", auth=("u", "p")).status_code == 200


def test_calls_record_and_wait(srv: FakeSdWebUI, client: httpx.Client) -> None:
    with pytest.raises(TimeoutError, match="txt2img"):
        srv.wait_for_calls("txt2img", 1, timeout=0.01)
    client.post("txt2img", json={"prompt": "x", "width": 8, "height": 8})
    (call,) = srv.wait_for_calls("txt2img", 1, timeout=1, completed=True)
    assert call.method == "POST" and call.body == {"prompt": "x", "width": 8, "height": 8}
    assert call.status == 200 and call.ended is not None and call.ended >= call.started
    assert call.locked_at is not None and call.started <= call.locked_at <= call.ended
    client.get("progress", params={"skip_current_image": "true"})
    assert srv.calls[-1].query == {"skip_current_image": "true"}
    assert len(srv.generation_calls()) == 1


def test_job_takes_inference_seconds() -> None:
    with FakeSdWebUI(inference_seconds=0.1) as s:
        httpx.post(s.api_url + "txt2img", json={"width": 8, "height": 8})
        (job,) = s.wait_for_jobs(1)
        assert job.ended is not None and 0.1 <= job.ended - job.started < 2


def test_stop_frees_port_with_open_keepalive() -> None:
    s = FakeSdWebUI(inference_seconds=0).start()
    port = s.port
    c = httpx.Client()
    assert c.get(s.api_url + "memory").status_code == 200  # keep-alive connection stays open
    t = time.monotonic()
    s.stop()
    assert time.monotonic() - t < 1
    c.close()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_threads_do_not_leak() -> None:
    before = threading.active_count()
    with FakeSdWebUI(inference_seconds=0) as s, httpx.Client() as c:
        for _ in range(3):
            c.get(s.api_url + "memory")
    deadline = time.monotonic() + 2
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)  # no event exists for thread exit; bounded poll
    assert threading.active_count() <= before
