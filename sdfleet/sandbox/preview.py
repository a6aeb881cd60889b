"""The sandbox's built-in CPU preview servers: the fake SD WebUI and ComfyUI servers
(:mod:`sdfleet.fakes`) whose images are placeholders labelled "SANDBOX PREVIEW" with the
prompt drawn on them, so nobody mistakes them for model output.

Every image carries the PNG text chunk ``sdfleet-sandbox`` (:data:`PREVIEW_TEXT_KEY`) and a
visible label. The fakes draw their images with ``make_png`` looked up in their own modules;
:func:`install` points those names at :func:`preview_png`, in the sandbox process only (the
sandbox is the only importer of this module; the agent image does not ship ``sdfleet.fakes``).
Stdlib only: a 5x7 bitmap font, as Pillow is not a dependency.
"""

from __future__ import annotations

import json
import logging
import struct
import zlib
from collections.abc import Mapping
from typing import Any

from sdfleet.fakes.images import PNG_SIGNATURE, _chunk, _text_chunk

log = logging.getLogger("sdfleet.sandbox.preview")

PREVIEW_TEXT_KEY = "sdfleet-sandbox"
PREVIEW_TEXT = "preview: a placeholder from the sandbox's CPU preview server, not a model output"
LABEL = "SANDBOX PREVIEW"

# 5x7 glyphs, one string of 7 rows of 5 pixels each; lower case is drawn upper case and
# anything else as "?".
_GLYPHS: dict[str, str] = {
    "A": "01110 10001 10001 11111 10001 10001 10001",
    "B": "11110 10001 10001 11110 10001 10001 11110",
    "C": "01110 10001 10000 10000 10000 10001 01110",
    "D": "11110 10001 10001 10001 10001 10001 11110",
    "E": "11111 10000 10000 11110 10000 10000 11111",
    "F": "11111 10000 10000 11110 10000 10000 10000",
    "G": "01110 10001 10000 10111 10001 10001 01111",
    "H": "10001 10001 10001 11111 10001 10001 10001",
    "I": "01110 00100 00100 00100 00100 00100 01110",
    "J": "00111 00010 00010 00010 00010 10010 01100",
    "K": "10001 10010 10100 11000 10100 10010 10001",
    "L": "10000 10000 10000 10000 10000 10000 11111",
    "M": "10001 11011 10101 10101 10001 10001 10001",
    "N": "10001 10001 11001 10101 10011 10001 10001",
    "O": "01110 10001 10001 10001 10001 10001 01110",
    "P": "11110 10001 10001 11110 10000 10000 10000",
    "Q": "01110 10001 10001 10001 10101 10010 01101",
    "R": "11110 10001 10001 11110 10100 10010 10001",
    "S": "01111 10000 10000 01110 00001 00001 11110",
    "T": "11111 00100 00100 00100 00100 00100 00100",
    "U": "10001 10001 10001 10001 10001 10001 01110",
    "V": "10001 10001 10001 10001 10001 01010 00100",
    "W": "10001 10001 10001 10101 10101 10101 01010",
    "X": "10001 10001 01010 00100 01010 10001 10001",
    "Y": "10001 10001 01010 00100 00100 00100 00100",
    "Z": "11111 00001 00010 00100 01000 10000 11111",
    "0": "01110 10001 10011 10101 11001 10001 01110",
    "1": "00100 01100 00100 00100 00100 00100 01110",
    "2": "01110 10001 00001 00010 00100 01000 11111",
    "3": "11111 00010 00100 00010 00001 10001 01110",
    "4": "00010 00110 01010 10010 11111 00010 00010",
    "5": "11111 10000 11110 00001 00001 10001 01110",
    "6": "00110 01000 10000 11110 10001 10001 01110",
    "7": "11111 00001 00010 00100 01000 01000 01000",
    "8": "01110 10001 10001 01110 10001 10001 01110",
    "9": "01110 10001 10001 01111 00001 00010 01100",
    " ": "00000 00000 00000 00000 00000 00000 00000",
    ".": "00000 00000 00000 00000 00000 01100 01100",
    ",": "00000 00000 00000 00000 01100 00100 01000",
    "-": "00000 00000 00000 11111 00000 00000 00000",
    "?": "01110 10001 00001 00010 00100 00000 00100",
    "!": "00100 00100 00100 00100 00100 00000 00100",
    "'": "00100 00100 01000 00000 00000 00000 00000",
    ":": "00000 01100 01100 00000 01100 01100 00000",
    "/": "00001 00010 00010 00100 01000 01000 10000",
}
_ADVANCE = 6  # glyph width + one column of space
_LINE = 9  # glyph height + two rows of space


def _rows(char: str) -> list[str]:
    return _GLYPHS.get(char.upper(), _GLYPHS["?"]).split()


class Canvas:
    """An RGB pixel buffer that draws text with the bitmap font."""

    def __init__(self, width: int, height: int, background: bytes) -> None:
        self.width, self.height = width, height
        self.pixels = bytearray(background * (width * height))

    def fill_rows(self, top: int, bottom: int, colour: bytes) -> None:
        stride = self.width * 3
        top, bottom = max(0, top), min(self.height, bottom)
        self.pixels[top * stride : bottom * stride] = colour * (self.width * (bottom - top))

    def text(self, x: int, y: int, text: str, scale: int, colour: bytes) -> None:
        for i, char in enumerate(text):
            for row, bits in enumerate(_rows(char)):
                for col, bit in enumerate(bits):
                    if bit == "1":
                        self._block(
                            x + (i * _ADVANCE + col) * scale, y + row * scale, scale, colour
                        )

    def _block(self, x: int, y: int, scale: int, colour: bytes) -> None:
        if x >= self.width or y >= self.height:
            return
        width = min(scale, self.width - x)
        for yy in range(y, min(y + scale, self.height)):
            start = (yy * self.width + x) * 3
            self.pixels[start : start + 3 * width] = colour * width

    def png(self, text: Mapping[str, str]) -> bytes:
        stride = self.width * 3
        raw = b"".join(
            b"\x00" + self.pixels[y * stride : (y + 1) * stride] for y in range(self.height)
        )
        ihdr = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        parts = [PNG_SIGNATURE, _chunk(b"IHDR", ihdr)]
        parts += [_text_chunk(k, v) for k, v in text.items()]
        parts += [_chunk(b"IDAT", zlib.compress(raw, 6)), _chunk(b"IEND", b"")]
        return b"".join(parts)


def wrap(text: str, columns: int, max_lines: int) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        while len(word) > columns:  # a word longer than a line is cut
            if line:
                lines.append(line)
                line = ""
            lines.append(word[:columns])
            word = word[columns:]
        candidate = f"{line} {word}".strip()
        if len(candidate) > columns:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines[:max_lines]


def prompt_of(parameters: str | None, text: Mapping[str, str] | None) -> str:
    """The prompt to draw: SD WebUI's infotext starts with it; a ComfyUI image carries its
    graph, whose first non-empty CLIPTextEncode text is the positive prompt."""
    if parameters:
        return parameters.split("\nNegative prompt:", 1)[0].split("\nSteps:", 1)[0]
    try:
        graph: Any = json.loads((text or {}).get("prompt", ""))
    except ValueError:
        return ""
    if not isinstance(graph, dict):
        return ""
    for node in graph.values():
        inputs = node.get("inputs", {}) if isinstance(node, dict) else {}
        text_input = inputs.get("text")
        is_text = isinstance(node, dict) and node.get("class_type") == "CLIPTextEncode"
        if is_text and isinstance(text_input, str) and text_input.strip():
            return text_input
    return ""


def preview_png(
    width: int,
    height: int,
    seed: int,
    parameters: str | None = None,
    *,
    text: Mapping[str, str] | None = None,
    bits: int = 4,
) -> bytes:
    """``make_png``'s signature: a deterministic placeholder with the label, the prompt and the
    seed drawn on it, and the fakes' text chunks plus :data:`PREVIEW_TEXT_KEY`."""
    del bits  # the fakes' noise level: a preview is flat colour
    seed &= 0xFFFFFFFF
    background = bytes((40 + seed % 60, 40 + (seed >> 8) % 60, 70 + (seed >> 16) % 80))
    canvas = Canvas(width, height, background)
    scale = max(1, width // (len(LABEL) * _ADVANCE + 4))
    canvas.fill_rows(0, (_LINE + 2) * scale, b"\xff\xc8\x00")
    canvas.text(2 * scale, 2 * scale, LABEL, scale, b"\x00\x00\x00")
    small = max(1, scale // 2)
    columns = max(1, (width - 4 * small) // (_ADVANCE * small))
    top = (_LINE + 4) * scale
    max_lines = max(0, (height - top) // (_LINE * small) - 1)
    prompt = prompt_of(parameters, text) or "(no prompt)"
    for i, line in enumerate(wrap(prompt, columns, max_lines)):
        canvas.text(2 * small, top + i * _LINE * small, line, small, b"\xff\xff\xff")
    canvas.text(2 * small, height - _LINE * small, f"SEED {seed}", small, b"\xc0\xc0\xc0")
    chunks: dict[str, str] = {}
    if parameters is not None:
        chunks["parameters"] = parameters
    chunks.update(text or {})
    chunks[PREVIEW_TEXT_KEY] = PREVIEW_TEXT
    return canvas.png(chunks)


def install() -> None:
    """Point the fakes' image function at :func:`preview_png` (this process only)."""
    from sdfleet.fakes.comfyui import nodes
    from sdfleet.fakes.sdwebui import jobs

    jobs.make_png = preview_png
    nodes.make_png = preview_png


def start_preview_server(runtime_type: str, model_filename: str | None) -> Any:
    """A started preview server for a runtime of ``runtime_type``; ``.url`` and ``.stop()``."""
    install()
    if runtime_type == "sdwebui":
        from sdfleet.fakes.sdwebui import FakeSdWebUI

        models = [model_filename] if model_filename else None
        sd = FakeSdWebUI(inference_seconds=0.05, models=models)
        sd.start()
        return sd
    from sdfleet.fakes.comfyui import FakeComfyUI

    comfy = FakeComfyUI(execution_seconds=0.05)
    comfy.start()
    return comfy
