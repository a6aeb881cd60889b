"""A faithful fake of the AUTOMATIC1111 SD WebUI API (``/sdapi/v1``) for tests and benchmarks.

Follows /work/shared/reference/inference-apis.md sections A and D.1. Stdlib ``http.server``
(one thread per connection, HTTP/1.1 keep-alive) so it starts and stops in milliseconds.

Usage::

    with FakeSdWebUI(inference_seconds=0.05) as srv:
        httpx.post(srv.url + "/sdapi/v1/txt2img", json={"prompt": "a cat"})
        srv.generation_calls()[0].body["prompt"]

Constructor knobs:

- ``inference_seconds``: wall time of one generation job (split over ``n_iter`` batches).
- ``port``: 0 picks a free port (at ``start()``, or when ``url`` is read first).
- ``models``: checkpoint names relative to the models folder (``"sub/x.safetensors"``) or
  :class:`FakeModel` objects; default three models. ``unhashed_models``: names whose sha256 is
  not known yet, so their title has no `` [hash]`` suffix until they are loaded.
- ``loaded_model``: alias of the checkpoint loaded at start (default: the first).
  ``model_loaded_at_start=False``: the first job pays ``load_seconds`` (background load).
- ``ready``: False means the ``/sdapi`` routes answer 404 ``{"detail":"Not Found"}`` while ``/``
  answers 200 (UI-mode startup phase); flip with ``set_ready(True)``.
- ``image_size``: ``(w, h)`` of every generated image; None (default) uses the request's size.
- ``load_seconds``: time a checkpoint switch holds the queue lock.
- ``api_auth``: ``("user", "pass")`` turns on ``--api-auth`` Basic auth (401 four-key body).
- ``allow_url_images``: False (default) answers 500 "Requests not allowed" for http(s) image
  inputs, so a test catches an agent that forgot to inline them.

Runtime knobs and observations:

- ``calls`` (list of :class:`Call`), ``generation_calls()``, ``wait_for_calls(suffix, n, timeout)``
- ``jobs`` (list of :class:`Job`, one per GPU run), ``wait_for_jobs(n, timeout)``
- ``generation_started`` (Event set when a job starts), ``wait_generation_started(timeout, n)``
- ``fail_next(status, body=None, count=1, path_suffix=None)``: None targets the generation
  routes (the fault fires once the job holds the lock); a suffix targets any route at arrival.
- ``hang_next(count=1)``: the next job(s) run until ``interrupt`` or ``release()``.
- ``drop_next(count=1, path_suffix=None)``: run the job, then send half the response and close
  the connection (the Call gets ``status == -1``).
- ``options`` holds a subset of the real settings; POST ``options`` with a key it lacks gives
  500 ``KeyError`` like upstream, so add keys to ``srv.options`` if a test needs them.
  ``override_settings`` keys it lacks are ignored.
- ``set_ready(bool)``, ``load_fails`` (a checkpoint switch logs and keeps the old model, still
  200 ``null``), ``interrupts`` / ``skips`` (counts), ``model_loads`` (names loaded, in order),
  ``add_model(name)`` (visible after ``refresh-checkpoints``), ``options`` (the live settings).

Images are PNGs from :func:`sdfleet.fakes.images.make_png` seeded with each image's seed and
carrying the infotext in a ``parameters`` chunk. ``samples_format`` other than png is not
emulated.

Modules: ``api`` (routes, request fields, replies), ``state`` (checkpoints, queue lock, jobs,
options), ``faults`` (injected errors, hangs, drops), ``jobs`` (the fake GPU), ``routes`` (the
handlers) and ``server`` (``http.server`` and the lifecycle).
"""

from sdfleet.fakes._common import Call
from sdfleet.fakes.sdwebui.server import FakeSdWebUI
from sdfleet.fakes.sdwebui.state import FakeModel, Job

__all__ = ["Call", "FakeModel", "FakeSdWebUI", "Job"]
