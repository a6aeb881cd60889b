"""The fake ComfyUI's ``/ws``: client registry, events, binary previews, cut connections."""

from __future__ import annotations

import contextlib
import json
import struct
import uuid
from typing import Any

from aiohttp import WSMsgType, web

from sdfleet.fakes.comfyui.api import MAX_UPLOAD
from sdfleet.fakes.comfyui.validation import ComfyUIValidation
from sdfleet.fakes.images import make_png


class ComfyUIWebSocket(ComfyUIValidation):
    """Websocket clients by ``clientId`` and the messages the run sends them."""

    async def _send(
        self, sid: str | None, typ: str, data: dict[str, Any], *, broadcast: bool = False
    ) -> None:
        msg = json.dumps({"type": typ, "data": data})
        targets: list[web.WebSocketResponse]
        if sid is None:
            targets = list(self._sockets.values()) if broadcast else []
        else:
            ws = self._sockets.get(sid)
            targets = [ws] if ws is not None else []
        for ws in targets:
            with contextlib.suppress(Exception):
                await ws.send_str(msg)

    async def _broadcast_status(self) -> None:
        await self._send(
            None,
            "status",
            {"status": {"exec_info": {"queue_remaining": self._queue_remaining()}}},
            broadcast=True,
        )

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(timeout=0.5, max_msg_size=MAX_UPLOAD)
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self._sockets[sid] = ws
        self._ws_requests[id(ws)] = request
        try:
            await ws.send_json(
                {
                    "type": "status",
                    "data": {
                        "status": {"exec_info": {"queue_remaining": self._queue_remaining()}},
                        "sid": sid,
                    },
                }
            )
            running = self._running
            if running is not None and running.client_id == sid and self._last_node is not None:
                await ws.send_json({"type": "executing", "data": {"node": self._last_node}})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                with contextlib.suppress(ValueError, AttributeError, TypeError):
                    data = json.loads(msg.data)
                    if data.get("type") == "feature_flags":
                        self._flags[id(ws)] = dict(data.get("data") or {})
                        await ws.send_json(
                            {
                                "type": "feature_flags",
                                "data": {
                                    "supports_preview_metadata": True,
                                    "max_upload_size": MAX_UPLOAD,
                                },
                            }
                        )
        finally:
            self._ws_requests.pop(id(ws), None)
            self._flags.pop(id(ws), None)
            if self.stale_close_bug or self._sockets.get(sid) is ws:
                self._sockets.pop(sid, None)
        return ws

    async def _preview(self, sid: str | None, prompt_id: str, node: str) -> None:
        image = make_png(8, 8, 1)
        targets = (
            list(self._sockets.values())
            if sid is None
            else [w for w in [self._sockets.get(sid)] if w]
        )
        for ws in targets:
            if self._flags.get(id(ws), {}).get("supports_preview_metadata"):
                meta = json.dumps(
                    {"node_id": node, "prompt_id": prompt_id, "display_node_id": node, "parent_node_id": None,
                     "real_node_id": node, "image_type": "image/png"}
                ).encode()  # fmt: skip
                frame = struct.pack(">II", 4, len(meta)) + meta + image
            else:
                frame = struct.pack(">II", 1, 2) + image
            with contextlib.suppress(Exception):
                await ws.send_bytes(frame)
        # Monitoring extensions send their own message types; clients must ignore them.
        await self._send(
            None, "crystools.monitor", {"cpu_utilization": 3.5, "gpus": []}, broadcast=True
        )

    async def _drop_sockets(self) -> None:
        for ws in list(self._sockets.values()):
            self._cut(ws)
        self._sockets.clear()

    def _cut(self, ws: web.WebSocketResponse) -> None:
        """Cut a websocket like a network failure would (no close frame)."""
        req = self._ws_requests.get(id(ws))
        if req is not None and req.transport is not None:
            req.transport.close()
