"""The fake ComfyUI's files: ``GET /view`` and ``POST /upload/image``, with upstream's checks."""

from __future__ import annotations

import mimetypes
import posixpath
from typing import Any

from aiohttp import web

from sdfleet.fakes.comfyui.api import FILE_TYPES, empty_response, strip_annotation
from sdfleet.fakes.comfyui.execution import ComfyUIExecution


class ComfyUIFiles(ComfyUIExecution):
    """Input, output and temp files, kept in memory by ``(type, subfolder, filename)``."""

    async def _view(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        filename = q.get("filename")
        if not filename:
            return empty_response(404)
        typ = q.get("type", "output")
        filename, annotated = strip_annotation(filename)
        typ = annotated or typ
        if typ not in FILE_TYPES or filename.startswith("/") or ".." in filename:
            return empty_response(400)
        subfolder = q.get("subfolder", "")
        if subfolder.startswith("/") or ".." in subfolder.split("/"):
            return empty_response(403)
        if "/" in filename:
            sub2, filename = filename.rsplit("/", 1)
            subfolder = posixpath.join(subfolder, sub2) if subfolder else sub2
        with self._mu:
            data = self._files.get((typ, subfolder.strip("/"), filename))
        if data is None:
            return empty_response(404)
        ctype = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        return web.Response(
            body=data, content_type=ctype, headers={"Content-Disposition": f'filename="{filename}"'}
        )

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        recorded: dict[str, Any] = {}
        for k, v in form.items():
            if isinstance(v, web.FileField):
                recorded[k] = {"filename": v.filename, "size": len(v.file.read())}
                v.file.seek(0)
            else:
                recorded[k] = v
        call = self._req_calls.get(id(request))
        if call is not None:
            call.body = recorded
        image = form.get("image")
        if not isinstance(image, web.FileField) or not image.filename:
            return empty_response(400)
        typ = str(form.get("type") or "input")
        if typ not in FILE_TYPES:
            raise web.HTTPInternalServerError(text="500 Internal Server Error")
        subfolder = str(form.get("subfolder") or "")
        name = image.filename
        if subfolder.startswith("/") or ".." in subfolder.split("/") or "/" in name or ".." in name:
            return empty_response(400)
        overwrite = str(form.get("overwrite") or "").lower() in ("true", "1")
        data = image.file.read()
        sub = subfolder.strip("/")
        with self._mu:
            if not overwrite:
                stem, dot, ext = name.rpartition(".")
                if not dot:
                    stem, ext = name, ""
                candidate, i = name, 1
                while (typ, sub, candidate) in self._files and self._files[
                    (typ, sub, candidate)
                ] != data:
                    candidate = f"{stem} ({i}){dot}{ext}"
                    i += 1
                name = candidate
            self._files[(typ, sub, name)] = data
            if typ == "input":
                self.uploads[f"{sub}/{name}" if sub else name] = data
        return web.json_response({"name": name, "subfolder": subfolder, "type": typ})
