"""ComfyUI results: a finished prompt's history entry read into a task outcome (B.3, B.9.4)."""

from __future__ import annotations

from typing import Any

import httpx

from sdfleet.agent import errors
from sdfleet.agent.errors import Interrupted, TaskError
from sdfleet.agent.outputs import OutputFile, TaskOutcome


def output_refs(outputs: dict[str, Any]) -> list[dict[str, Any]]:
    """File references (``{filename, subfolder, type}``) in history outputs, in node order."""

    def order(node_id: str) -> tuple[int, str]:
        head = node_id.split(":", 1)[0]
        return (int(head) if head.isdigit() else 1 << 30, node_id)

    refs: list[dict[str, Any]] = []
    for node_id in sorted(outputs, key=order):
        node_out = outputs[node_id]
        if not isinstance(node_out, dict):
            continue
        for value in node_out.values():
            if not isinstance(value, list):
                continue
            refs.extend(
                item
                for item in value
                if isinstance(item, dict) and isinstance(item.get("filename"), str)
            )
    return refs


def check_status(entry: dict[str, Any], abort_reason: str | None) -> None:
    """Raise the task's error when the history entry says the prompt failed or was interrupted
    (``abort_reason``: why the agent interrupted it, if it did)."""
    status = entry.get("status") or {}
    if status.get("status_str") != "error":
        return
    messages = status.get("messages") or []
    for kind, data in messages:
        if kind == "execution_error":
            keys = ("node_id", "node_type", "exception_type", "exception_message", "traceback")
            raise TaskError(
                errors.EXECUTION_ERROR,
                str(data.get("exception_message") or "execution error").strip(),
                {k: data.get(k) for k in keys},
            )
    if any(kind == "execution_interrupted" for kind, _ in messages):
        if abort_reason == "shutdown":
            raise Interrupted("interrupted for shutdown")
        if abort_reason == "timeout":
            raise TaskError(errors.TIMEOUT, "the job ran past JOB_TIMEOUT_SECONDS")
        raise TaskError(errors.EXECUTION_ERROR, "the prompt was interrupted on the server")
    raise TaskError(errors.EXECUTION_ERROR, "the prompt failed", status)


def collect(
    client: httpx.Client, prompt_id: str, entry: dict[str, Any], warnings: Any
) -> TaskOutcome:
    """Download the prompt's output files (uploader thread)."""
    files: list[OutputFile] = []
    for ref in output_refs(entry.get("outputs") or {}):
        params = {
            "filename": ref["filename"],
            "subfolder": ref.get("subfolder") or "",
            "type": ref.get("type") or "output",
        }
        response = client.get("/view", params=params, timeout=120.0)
        if response.status_code != 200:
            raise TaskError(
                errors.SERVER_ERROR,
                f"view {ref['filename']} returned HTTP {response.status_code}",
                ref,
            )
        files.append(OutputFile.from_bytes(response.content))
    extra: dict[str, Any] = {"prompt_id": prompt_id, "outputs": entry.get("outputs")}
    if warnings:
        extra["node_errors"] = warnings
    return TaskOutcome(files=files, info=entry.get("status"), extra=extra)
