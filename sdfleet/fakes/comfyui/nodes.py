"""What the fake ComfyUI's nodes do: execution order, cache signatures, symbolic values, and
the images SaveImage/PreviewImage store."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sdfleet.fakes.comfyui.api import NODE_SPECS, strip_annotation
from sdfleet.fakes.comfyui.websocket import ComfyUIWebSocket
from sdfleet.fakes.images import make_png, png_size


class ComfyUINodes(ComfyUIWebSocket):
    """The graph semantics the run needs; no GPU work, no events."""

    def _order(self, graph: dict[str, Any], outputs: list[str]) -> list[str]:
        order: list[str] = []
        seen: set[str] = set()

        def visit(nid: str) -> None:
            if nid in seen:
                return
            seen.add(nid)
            for val in (graph[nid].get("inputs") or {}).values():
                if isinstance(val, list) and len(val) == 2 and isinstance(val[0], str):
                    visit(val[0])
            order.append(nid)

        for out in outputs:
            visit(out)
        return order

    def _signatures(self, graph: dict[str, Any], order: list[str]) -> dict[str, str]:
        sigs: dict[str, str] = {}
        for nid in order:
            node = graph[nid]
            parts: dict[str, Any] = {"class_type": node["class_type"]}
            for k, v in sorted((node.get("inputs") or {}).items()):
                if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str) and v[0] in sigs:
                    parts[k] = ["link", sigs[v[0]], v[1]]
                else:
                    parts[k] = v
            if node["class_type"] == "LoadImage":  # upstream hashes the file content
                data = self.uploads.get(strip_annotation(str(parts.get("image")))[0], b"")
                parts["content"] = hashlib.sha256(data).hexdigest()
            sigs[nid] = hashlib.sha256(
                json.dumps(parts, sort_keys=True, default=str).encode()
            ).hexdigest()
        return sigs

    def _compute(
        self, graph: dict[str, Any], nid: str, values: dict[str, Any]
    ) -> tuple[Any, dict[str, Any] | None]:
        """A symbolic value per node, enough to size and seed the images."""
        node = graph[nid]
        cls = node["class_type"]
        inp = node.get("inputs") or {}

        def link(name: str) -> Any:
            val = inp[name]
            src = values[val[0]]
            return src[val[1]] if isinstance(src, tuple) else src

        if cls == "EmptyLatentImage":
            return {
                "w": int(inp["width"]),
                "h": int(inp["height"]),
                "batch": int(inp["batch_size"]),
                "seed": 0,
            }, None
        if cls == "LoadImage":
            data = self.uploads.get(strip_annotation(str(inp["image"]))[0], b"")
            try:
                w, h = png_size(data)
            except ValueError:
                w, h = 512, 512
            img = {
                "w": w,
                "h": h,
                "batch": 1,
                "seed": int(hashlib.sha256(data).hexdigest()[:8], 16),
            }
            return (img, {"mask": True}), None
        if cls == "KSampler":
            lat = dict(link("latent_image"))
            lat["seed"] = (int(inp["seed"]) + lat["seed"] * 31) & 0xFFFFFFFF
            return lat, None
        if cls in ("VAEDecode", "VAEEncode"):
            return dict(link("samples" if cls == "VAEDecode" else "pixels")), None
        if cls in ("SaveImage", "PreviewImage"):
            img = link("images")
            return None, {"images": self._save(graph, cls, inp, img)}
        # loaders and encoders: opaque handles, one per output slot
        return tuple(f"{nid}:{i}" for i in range(len(NODE_SPECS[cls][1]))), None

    def _save(
        self, graph: dict[str, Any], cls: str, inp: dict[str, Any], img: dict[str, Any]
    ) -> list[dict[str, Any]]:
        if cls == "SaveImage":
            typ, prefix = "output", str(inp.get("filename_prefix", "ComfyUI"))
        else:
            typ = "temp"
            prefix = "ComfyUI_temp_" + "".join(
                self._rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5)
            )
        subfolder, _, base = prefix.rpartition("/")
        out = []
        with self._mu:
            counters = [
                int(name[len(base) + 1 : len(base) + 6])
                for (t, s, name) in self._files
                if t == typ
                and s == subfolder
                and name.startswith(base + "_")
                and name[len(base) + 1 : len(base) + 6].isdigit()
            ]
            counter = max(counters, default=0) + 1
            for i in range(img["batch"]):
                filename = f"{base}_{counter + i:05}_.png"
                data = make_png(
                    img["w"], img["h"], img["seed"] + i, text={"prompt": json.dumps(graph)}
                )
                self._files[(typ, subfolder, filename)] = data
                out.append({"filename": filename, "subfolder": subfolder, "type": typ})
        return out
