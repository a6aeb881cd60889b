"""Downloads stream to spooled temp files: memory stays bounded however large the inputs."""

from __future__ import annotations

import base64
import hashlib
import tracemalloc
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import pytest

from sdfleet.agent.input_limits import new_spool, spool_base64
from sdfleet.agent.inputs import InputFetcher
from tests.agent.input_servers import BlobServer

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def blob() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * (20 * MIB // 256 - 1) + b"\0" * 248


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha(fh: IO[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(MIB), b""):
        digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.timeout(120)
def test_six_20_mib_inputs_are_fetched_with_bounded_memory(blob: bytes, tmp_path: Path) -> None:
    assert len(blob) == 20 * MIB
    with BlobServer(blob) as server:
        f = InputFetcher(
            allowed_hosts=frozenset({"127.0.0.1"}),
            max_total_bytes=128 * MIB,
            spool_dir=str(tmp_path),
        )
        tracemalloc.start()
        try:
            with f.task() as inputs, ExitStack() as held:
                # All six stay open at once, as a task's inputs would before the request.
                files = [
                    held.enter_context(inputs.open(server.url(f"/{i}"), f"init_images[{i}]"))
                    for i in range(6)
                ]
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                digests = {file_sha(fh) for fh in files}
        finally:
            tracemalloc.stop()
    assert inputs.used_bytes == 6 * 20 * MIB
    assert digests == {sha(blob)}
    # 120 MiB fetched; the old code held it all (plus joins and copies) in memory.
    assert peak < 40 * MIB, f"peak {peak / MIB:.1f} MiB"


def test_base64_from_a_spool_makes_no_extra_copy(blob: bytes, tmp_path: Path) -> None:
    spool = new_spool(1 * MIB, str(tmp_path))
    for start in range(0, len(blob), MIB):
        spool.write(blob[start : start + MIB])
    encoded_size = 4 * ((len(blob) + 2) // 3)
    tracemalloc.start()
    try:
        text = spool_base64(spool, len(blob))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        spool.close()
    assert text == base64.b64encode(blob).decode("ascii")
    # The final str plus one encoding buffer of the same size (b64encode(read()) would also
    # hold the raw bytes and a bytes copy of the result).
    assert peak < 2 * encoded_size + 2 * MIB, f"peak {peak / MIB:.1f} MiB"


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 196607, 196608, 196609, 3 * 65536 * 2 + 5])
def test_spool_base64_matches_b64encode_at_block_edges(size: int) -> None:
    data = bytes(i % 251 for i in range(size))
    spool = new_spool(1024, None)
    spool.write(data)
    try:
        assert spool_base64(spool, size) == base64.b64encode(data).decode("ascii")
    finally:
        spool.close()
