"""A faithful fake of the ComfyUI server (HTTP + websocket) for tests and benchmarks.

Follows /work/shared/reference/inference-apis.md sections B and D.2. An aiohttp app on its own
event loop in a background thread; every route is also served under ``/api``.

Usage::

    with FakeComfyUI(execution_seconds=0.05) as srv:
        ws = websocket.create_connection(srv.ws_url("c1"))
        httpx.post(srv.url + "/prompt", json={"prompt": graph, "client_id": "c1"})
        srv.wait_for_history(prompt_id)

Constructor knobs:

- ``execution_seconds``: time spent in each KSampler that is not cached (split over its steps;
  a graph without KSampler spends it in its first executed node).
- ``port``: 0 picks a free port (known from construction on, see ``url``).
- ``ready``: False means nothing listens (connection refused) until ``set_ready(True)``.
- ``checkpoints``: the ``ckpt_name`` combo values (default two files).
- ``stale_close_bug``: emulate upstream's registry bug (a replaced socket's close handler
  removes the *new* socket of the same clientId, which then gets no targeted events).

Runtime knobs and observations:

- ``calls``, ``wait_for_calls(suffix, n, timeout)``: every HTTP request, as :class:`Call`
  (multipart uploads are recorded as ``{field: value}``, files as ``{"filename", "size"}``).
- ``executions`` (list of :class:`Execution`: submitted/started/ended times, status),
  ``wait_for_executions(n, timeout)``, ``wait_for_history(prompt_id, timeout)``,
  ``history_snapshot()``.
- ``submitted`` (``{prompt_id: time of its POST /prompt}``), ``queue_ids()`` (running and
  pending ids, in run order), ``deleted`` (pending ids removed by ``POST /queue {"delete"}``),
  ``wait_until(predicate, timeout)`` (re-checked whenever one of these records changes).
- ``uploads``: ``{"<subfolder>/<name>" or "<name>": bytes}`` of input files.
- ``interrupts``: count of ``POST /interrupt``; ``interrupted_ids``: the prompt_id each one
  named (None: whatever runs). One naming a prompt that is not running does nothing.
- ``fail_next(status, body=None, count=1, path_suffix="/prompt")``: HTTP-level 4xx/5xx before
  the route runs; ``drop_next(count=1, path_suffix="/prompt")`` closes the connection instead.
- ``fail_next_execution(exception_type, message, node_id=None)``: the next run fails in that
  node (default: its KSampler) with ``execution_error``; history status "error".
- ``drop_ws_next_run()``: the prompt's websocket is cut at its first progress event; later
  events are lost but the history is still written.
- ``history_delay``: seconds between ``execution_success``/``_error``/``_interrupted`` and the
  history write (the race of B.9).
- ``hang_next(count=1)``: the next run's sampler only ends via ``POST /interrupt`` (or
  ``release()``).
- ``restart()``: wipes queue, history, cache and temp files, drops the running prompt and
  every websocket (uploads and outputs stay, they are on disk).
- ``set_ready(bool)``: start/stop listening on the same port.

Prompts run one at a time in queue order (``number``, then arrival); the next starts as soon as
the previous one's history is written. Each run sends, to the prompt's client only: ``execution_start``, ``execution_cached``, then per
executed node ``executing``, ``progress_state`` and (KSampler) ``progress`` per step with one
binary preview frame (type 1, or type 4 after the client sent ``feature_flags`` with
``supports_preview_metadata``) and one unknown JSON message type, ``executed`` for output
nodes, then ``execution_success``, the history write, a ``status`` broadcast and
``executing {node: null, prompt_id}``. Identical resubmissions are served from the cache.

Modules: ``api`` (node specs, queue items, error bodies), ``state`` (queue, history, files,
sockets), ``faults`` (the knobs above), ``validation`` (``POST /prompt`` checks), ``websocket``,
``nodes`` (order, cache signatures, images), ``execution`` (the worker), ``files`` (``/view``,
``/upload/image``), ``routes`` and ``server`` (the aiohttp app and its lifecycle).
"""

from sdfleet.fakes._common import Call
from sdfleet.fakes.comfyui.server import FakeComfyUI
from sdfleet.fakes.comfyui.state import Execution

__all__ = ["Call", "Execution", "FakeComfyUI"]
