"""Input-fetch memory benchmark: ``python -m sdfleet.agent.bench_inputs`` (not a test).

Six 20 MiB inputs are served from 127.0.0.1 by this process; each mode runs in a fresh child
process, once for peak RSS (``ru_maxrss``) and once under tracemalloc (Python allocations):

- ``old-inline``: the previous algorithm (chunks in a list, joined, ``b64encode().decode()``),
  keeping the six base64 strings as an sdwebui task did;
- ``new-inline``: ``inline_sdwebui_inputs`` today (spooled download, block-wise base64), with
  the total budget raised to 128 MiB so all six pass (the 64 MiB default refuses the fourth);
- ``new-fetch``: the six downloads held as spooled files, as a file-based consumer would use
  them (ComfyUI uploads), without base64.

The base64 strings alone are 6 x 26.7 MiB = 160 MiB: a request carrying them inline needs
them in memory, so the inline modes differ in the copies around that.
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import resource
import subprocess
import sys
import tempfile
import tracemalloc
from contextlib import ExitStack

MIB = 1024 * 1024
INPUTS = 6
SIZE = 20 * MIB
MODES = ("old-inline", "new-inline", "new-fetch")


def _legacy_base64(url: str) -> str:
    """The download path before spooling: a list of chunks, joined, then encoded."""
    import httpx

    with (
        httpx.Client(timeout=30.0, trust_env=False) as client,
        client.stream("GET", url) as response,
    ):
        chunks: list[bytes] = []
        for chunk in response.iter_bytes(64 * 1024):
            chunks.append(chunk)
        data = b"".join(chunks)
    return base64.b64encode(data).decode("ascii")


def _run_mode(mode: str, base_url: str) -> int:
    """Do the work of ``mode``; the number of bytes the result holds (a sanity check)."""
    from sdfleet.agent.inputs import InputFetcher, inline_sdwebui_inputs

    urls = [f"{base_url}/{i}.png" for i in range(INPUTS)]
    fetcher = InputFetcher(allowed_hosts=frozenset({"127.0.0.1"}), max_total_bytes=128 * MIB)
    if mode == "old-inline":
        return sum(len(s) for s in [_legacy_base64(u) for u in urls])
    if mode == "new-inline":
        out, _count = inline_sdwebui_inputs({"init_images": urls}, fetcher)
        return sum(len(s) for s in out["init_images"])
    with fetcher.task() as inputs, ExitStack() as held:
        files = [
            held.enter_context(inputs.open(u, f"init_images[{i}]")) for i, u in enumerate(urls)
        ]
        return sum(f.seek(0, 2) for f in files)


def child(mode: str, base_url: str, trace: bool) -> None:
    import httpx  # noqa: F401 - imported before the baseline, as in the agent

    import sdfleet.agent.inputs  # noqa: F401

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if trace:
        tracemalloc.start()
    held = _run_mode(mode, base_url)
    peak_traced = tracemalloc.get_traced_memory()[1] / MIB if trace else float("nan")
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{baseline:.1f} {peak_rss:.1f} {peak_traced:.1f} {held}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=MODES)
    parser.add_argument("--url")
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.url, args.trace)
        return 0
    from sdfleet.fakes.blobs import BlobServer  # not in the agent image: imported here only

    with BlobServer(os.urandom(SIZE)) as server:
        _report(f"http://127.0.0.1:{server.port}")
    return 0


def _report(base_url: str) -> None:
    print(
        f"{INPUTS} inputs of {SIZE // MIB} MiB from 127.0.0.1; Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {_memory_gib():.0f} GiB, temp dir {tempfile.gettempdir()}"
    )
    print(f"{'mode':<12} {'RSS before':>11} {'peak RSS':>9} {'peak traced':>12}  (MiB)")
    for mode in MODES:
        results = []
        for trace in (False, True):
            command = [
                sys.executable,
                "-m",
                "sdfleet.agent.bench_inputs",
                "--child",
                mode,
                "--url",
                base_url,
            ]
            output = subprocess.run(
                command + (["--trace"] if trace else []), check=True, capture_output=True, text=True
            ).stdout.split()
            results.append([float(x) for x in output])
        base, rss = results[0][0], results[0][1]
        traced = results[1][2]
        print(f"{mode:<12} {base:>11.1f} {rss:>9.1f} {traced:>12.1f}")


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError):
        return float("nan")


if __name__ == "__main__":
    sys.exit(main())
