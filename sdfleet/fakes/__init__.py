"""Fake SD WebUI and ComfyUI servers that speak the subset of their APIs the queue agent uses.

They run in-process on 127.0.0.1, start in milliseconds and record every request, so the
agent's tests and benchmarks (``python -m sdfleet.agent.bench``) exercise the real HTTP and
websocket protocols without a GPU. Each server's docstring lists its knobs (fault injection,
hangs, dropped connections, readiness).

- :mod:`sdfleet.fakes.images`: deterministic PNGs (stdlib only) and small PNG readers
  (``make_png``, ``png_size``, ``png_text``, ``png_pixels``, ``sniff_image_type``).
- :mod:`sdfleet.fakes.sdwebui`: :class:`FakeSdWebUI`, the AUTOMATIC1111 ``/sdapi/v1`` subset.
- :mod:`sdfleet.fakes.comfyui`: :class:`FakeComfyUI`, the ComfyUI HTTP + websocket subset
  (needs aiohttp).
- :mod:`sdfleet.fakes._common`: the ``Call`` record, the ``CallLog`` both fakes use, and
  ``free_port()``.
- :mod:`sdfleet.fakes.fleet`: one runtime's event plane (SNS, SQS, DLQ, S3) on a moto server
  (needs ``moto[server]``); :mod:`sdfleet.fakes.agents`: the real agent wired to it, in-process
  or as a subprocess, and AWS clients that fail on purpose.
- :mod:`sdfleet.fakes.blobs`: a loopback server for large inputs.

The ComfyUI fake and the moto servers need the dev extra (aiohttp, moto[server]); the agent
image contains none of this package.

Nothing is imported here, so importing one fake does not pull in the other's dependencies.
"""
