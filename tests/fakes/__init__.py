"""Test doubles for the inference servers the queue agent talks to.

- :mod:`tests.fakes.images`: deterministic PNGs (stdlib only) and small PNG readers
  (``make_png``, ``png_size``, ``png_text``, ``png_pixels``, ``sniff_image_type``).
- :mod:`tests.fakes.sdwebui`: :class:`FakeSdWebUI`, the AUTOMATIC1111 ``/sdapi/v1`` subset.
- :mod:`tests.fakes.comfyui`: :class:`FakeComfyUI`, the ComfyUI HTTP + websocket subset.
- :mod:`tests.fakes._common`: the ``Call`` record, the ``CallLog`` both fakes use, and
  ``free_port()``.

Each module's docstring lists its knobs. Nothing is imported here, so importing one fake does
not pull in the other's dependencies (aiohttp).
"""
