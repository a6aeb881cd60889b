"""The task API Lambda: submits tasks and answers their status.

API Gateway REST API, proxy integration: ``POST /v1alpha2`` and ``POST /v1alpha1`` validate a
task (``sdfleet.agent.contract``), record it in the task table (``sdfleet.agent.task_state``)
and publish it to the input topic (:mod:`.submit`); ``GET /v1alpha2/tasks/{id}`` reads it back
for the API key that created it (:mod:`.status`). Runs on the Lambda Python runtime with its
bundled boto3 and nothing else.

Privacy: request content (prompts, images) is user data and the ``x-api-key`` header is a
secret; neither is ever logged. One JSON log line per request (``task_request``, the schema of
``sdfleet.agent.contract_log``, docs/logging.md) carries only routing facts; in Lambda it is
written straight to stdout, so each CloudWatch event is one JSON object.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

from sdfleet.agent import contract_log as cl
from sdfleet.components.task_api import events, status, submit
from sdfleet.components.task_api import responses as r
from sdfleet.components.task_api import settings as cfg

logger = logging.getLogger("sdfleet.task_api")
logger.setLevel(logging.INFO)
# In Lambda: this line and the task store's, as JSON straight to stdout.
cl.lambda_logging(cl.SERVICE_TASK_API)

ROUTES = events.ROUTES
reset = cfg.reset


def _handle(event: Any, log: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(event, dict):
        return r.error(400, "invalid_request", "the event is not an API Gateway proxy event")
    route = events.route(event)
    log["api"] = events.STATUS_VERSION if route.status else route.version
    if route.status:
        allowed = "GET"
    elif route.version is not None:
        allowed = "POST"
    else:
        return r.error(
            404,
            "not_found",
            f"unknown path; POST to one of: /{', /'.join(ROUTES)}, or GET {events.STATUS_RESOURCE}",
        )
    if route.method != allowed:
        return r.error(
            405,
            "method_not_allowed",
            f"{route.method or 'this method'} is not allowed; use {allowed}",
            Allow=allowed,
        )
    try:
        settings = cfg.load()
    except cfg.ConfigError as exc:
        log["config_error"] = str(exc)
        return r.error(500, "internal_error", "the service is misconfigured")
    if route.status:
        return status.handle(event, route, settings, log)
    assert route.version is not None
    return submit.handle(event, route.version, settings, log)


def handler(event: Any, context: Any) -> dict[str, Any]:
    started = time.monotonic()
    log: dict[str, Any] = {"offloaded": False}
    request_id = getattr(context, "aws_request_id", None)
    if request_id:
        log[cl.REQUEST_ID] = request_id
    try:
        response = _handle(event, log)
    except Exception as exc:
        # Only the exception type and frames: its message could quote request content.
        log["unexpected"] = type(exc).__name__
        log["trace"] = "".join(traceback.format_tb(exc.__traceback__))
        response = r.error(500, "internal_error", "internal error")
    log[cl.STATUS] = response["statusCode"]
    log[cl.LATENCY_MS] = round((time.monotonic() - started) * 1000, 1)
    if "id" in log:  # the routes record the task id as ``id``; the schema calls it task_id
        log[cl.TASK_ID] = log.pop("id")
    level = logging.ERROR if response["statusCode"] >= 500 else logging.INFO
    logger.log(level, "task_request", extra={"fields": log})
    return response
