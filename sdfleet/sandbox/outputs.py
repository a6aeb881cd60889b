"""``--state DIR``: results copied from the sandbox's bucket into ``DIR/outputs`` as the agents
write them, so they outlive the in-memory moto server."""

from __future__ import annotations

import threading
from pathlib import Path

from sdfleet.fakes.fleet import client

POLL_SECONDS = 0.5


class OutputMirror:
    """A thread that copies every new object of ``bucket`` to ``folder`` (same relative key).
    Keys are object keys the agent wrote (``<prefix>/<task id>/...``); one that would leave the
    folder is skipped."""

    def __init__(self, endpoint: str, bucket: str, folder: Path) -> None:
        self.s3 = client("s3", endpoint)
        self.bucket = bucket
        self.folder = folder.resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.copied: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-outputs", daemon=True)

    def start(self) -> OutputMirror:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sync()  # what finished during the last interval

    def _run(self) -> None:
        # moto gives no event for a new object: list the bucket every POLL_SECONDS.
        while not self._stop.wait(POLL_SECONDS):
            self.sync()

    def sync(self) -> int:
        copied = 0
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key in self.copied:
                    continue
                target = (self.folder / key).resolve()
                if not target.is_relative_to(self.folder):
                    self.copied.add(key)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                target.write_bytes(body)
                self.copied.add(key)
                copied += 1
        return copied
