"""The task API Lambda: validates a task (``sdfleet.agent.contract``) and publishes it to the input topic.

API Gateway REST API, proxy integration: ``POST /v1alpha2`` and ``POST /v1alpha1``. Runs on the
Lambda Python runtime with its bundled boto3 and nothing else.

Privacy: request content (prompts, images) is user data and the ``x-api-key`` header is a
secret; neither is ever logged. One JSON log line per request carries only routing facts.

Offloaded content is written with ``ServerSideEncryption=AES256`` explicitly, so the object is
encrypted even if the bucket default were changed. Its key is unique per request
(``<prefix>/<id>/<API Gateway request id>.request.json``) and written with ``IfNoneMatch: *``,
so two requests with the same task id never share or overwrite an object. The final message
size is checked before anything is written, and an object whose task could not be published
is deleted again (best effort, logged).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from sdfleet.agent import contract

logger = logging.getLogger("sdfleet.task_api")
logger.setLevel(logging.INFO)

ROUTES = ("v1alpha2", "v1alpha1")
# Error codes of transient AWS failures: the client should retry, so 503 instead of 502.
_THROTTLING_CODES = frozenset(
    {
        "Throttled",  # SNS Publish
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "KMSThrottling",  # SNS on an encrypted topic
        "KMSThrottlingException",
    }
)
# Field-path segments that are contract vocabulary. Any other segment is client-chosen (a
# ComfyUI node id, an unknown key) and could be user content, so logs show it as "*".
_LOG_FIELD_WORDS = frozenset(
    {
        "task", "metadata", "content", "content_ref", "id", "runtime", "tasktype", "prefix",
        "context", "prompt", "negative_prompt", "override_settings", "alwayson_scripts",
        "sd_model_checkpoint", "init_images", "image", "imageList", "data", "class_type",
        "inputs", "id_task", "save_dir", "image_link", "uid", "sd_vae", "mask", "steps",
        "width", "height", "batch_size", "n_iter", "hr_second_pass_steps", "hr_scale",
        "hr_resize_x", "hr_resize_y", "args", "input_image", "mask_image",
    }
)  # fmt: skip
_INDEXES = re.compile(r"^(\[\d+\])*$")
# Cut client-chosen text (field paths can hold ComfyUI node ids) in responses and logs.
_MAX_FIELD_CHARS = 256
# API Gateway gives up after 29 s; fail fast enough to answer with our own error.
_BOTO_CONFIG = Config(
    connect_timeout=3,
    read_timeout=8,
    retries={"max_attempts": 3, "mode": "standard"},
)


class ConfigError(Exception):
    """The function's environment is broken: a deployment error, not bad input."""


@dataclass(frozen=True)
class Settings:
    topic_arn: str
    bucket: str
    runtimes: tuple[contract.RuntimeInfo, ...]
    region: str | None


_settings: Settings | None = None
_clients: dict[str, Any] = {}


def reset() -> None:
    """Forget cached settings and clients (tests change the environment between cases)."""
    global _settings
    _settings = None
    _clients.clear()


def _load_settings() -> Settings:
    global _settings
    if _settings is not None:
        return _settings
    topic_arn = os.environ.get("INPUT_TOPIC_ARN", "")
    bucket = os.environ.get("OUTPUT_BUCKET", "")
    raw_runtimes = os.environ.get("RUNTIMES", "")
    arn_parts = topic_arn.split(":")
    if len(arn_parts) < 6 or arn_parts[0] != "arn" or arn_parts[2] != "sns":
        raise ConfigError("INPUT_TOPIC_ARN is missing or not an SNS topic ARN")
    if not bucket:
        raise ConfigError("OUTPUT_BUCKET is missing")
    try:
        runtimes = contract.load_runtimes(raw_runtimes)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"RUNTIMES is invalid: {exc}") from exc
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or arn_parts[3]
    # Cached only once valid: a broken environment is reported on every request.
    _settings = Settings(topic_arn, bucket, tuple(runtimes), region or None)
    return _settings


def _sns(settings: Settings) -> Any:
    if "sns" not in _clients:
        _clients["sns"] = boto3.client("sns", region_name=settings.region, config=_BOTO_CONFIG)
    return _clients["sns"]


def _s3(settings: Settings) -> Any:
    if "s3" not in _clients:
        _clients["s3"] = boto3.client("s3", region_name=settings.region, config=_BOTO_CONFIG)
    return _clients["s3"]


# --------------------------------------------------------------------------------------------
# Responses


def _response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "body": json.dumps(body, separators=(",", ":")),
        "isBase64Encoded": False,
    }


def _cut(text: str | None) -> str | None:
    if text is not None and len(text) > _MAX_FIELD_CHARS:
        return text[: _MAX_FIELD_CHARS - 3] + "..."
    return text


def _log_field(field: str | None) -> str | None:
    if field is None:
        return None
    safe = []
    for segment in field.split("."):
        word, bracket, rest = segment.partition("[")
        ok = word in _LOG_FIELD_WORDS and _INDEXES.match(bracket + rest)
        safe.append(segment if ok else "*")
    return _cut(".".join(safe))


def _error(status: int, code: str, message: str, field: str | None = None, **headers: str) -> dict:
    return _response(
        status, {"error": {"code": code, "message": message, "field": _cut(field)}}, headers
    )


# --------------------------------------------------------------------------------------------
# Request handling


def _route(event: dict[str, Any]) -> tuple[str | None, str]:
    """The API version named by the path's last segment (any stage or base-path prefix is
    ignored) and the HTTP method. Also reads HTTP API (v2) events, for a later migration."""
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, dict) else None
    path = event.get("path") or event.get("rawPath") or event.get("resource")
    method = event.get("httpMethod")
    if isinstance(http, dict):
        path = path or http.get("path")
        method = method or http.get("method")
    segment = path.rstrip("/").rsplit("/", 1)[-1] if isinstance(path, str) else ""
    version = segment if segment in ROUTES else None
    return version, method.upper() if isinstance(method, str) else ""


def _raw_body(event: dict[str, Any]) -> str | bytes | None:
    body = event.get("body")
    if body is None or not event.get("isBase64Encoded"):
        if body is not None and not isinstance(body, str):
            raise contract.ContractError("invalid_body", "the body must be text", None)
        return body
    if not isinstance(body, str):
        raise contract.ContractError("invalid_body", "the body must be base64 text", None)
    # Decoded base64 is 3/4 of its text: refuse clearly oversized bodies before decoding.
    if len(body) > (contract.MAX_BODY_BYTES // 3 + 1) * 4:
        raise contract.ContractError(
            "payload_too_large",
            f"the body is over {contract.MAX_BODY_BYTES} bytes",
            None,
            status=413,
        )
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise contract.ContractError(
            "invalid_encoding", "the body is flagged base64 but is not valid base64", None
        ) from exc


class OffloadConflict(Exception):
    """The request's offload key already exists (a replayed request id)."""


def _plan(task: contract.Task, settings: Settings, request_id: str) -> contract.Task:
    """The message to publish: inline, or with its content moved to a per-request key. Its
    final size is checked here, before anything is written (a 413 names the field)."""
    message = task
    if contract.message_size(task.to_message()) > contract.OFFLOAD_THRESHOLD_BYTES:
        key = contract.request_key(task.metadata.prefix, task.metadata.id, request_id)
        message = replace(task, content=None, content_ref=f"s3://{settings.bucket}/{key}")
    contract.check_message_fits(message)
    return message


def _publish(
    task: contract.Task, settings: Settings, log: dict[str, Any], request_id: str = ""
) -> None:
    """Publish the task, first moving its content to S3 if the message would be too big."""
    message = _plan(task, settings, request_id)
    key = contract.parse_s3_uri(message.content_ref)[1] if message.content_ref else None
    if key is not None:
        try:
            _s3(settings).put_object(
                Bucket=settings.bucket,
                Key=key,
                Body=json.dumps(task.content, separators=(",", ":")).encode("utf-8"),
                ContentType="application/json",
                ServerSideEncryption="AES256",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                raise OffloadConflict(code) from exc  # not ours: leave it alone
            _discard(settings, key, log)
            raise
        except BotoCoreError:
            _discard(settings, key, log)  # a timed-out write may still have landed
            raise
        log["offloaded"] = True
    try:
        _sns(settings).publish(
            TopicArn=settings.topic_arn,
            Message=contract.encode_message(message),
            MessageAttributes=message.message_attributes(),
        )
    except Exception:
        if key is not None:
            _discard(settings, key, log)
        raise


def _discard(settings: Settings, key: str, log: dict[str, Any]) -> None:
    """Best effort: an offloaded object whose task was never queued must not stay behind."""
    try:
        _s3(settings).delete_object(Bucket=settings.bucket, Key=key)
        log["offload_cleanup"] = "deleted"
    except (ClientError, BotoCoreError) as exc:
        error = exc.response.get("Error", {}) if isinstance(exc, ClientError) else {}
        log["offload_cleanup"] = f"failed: {error.get('Code') or type(exc).__name__}"


def _request_id(event: dict[str, Any]) -> str:
    """API Gateway's request id when it is a safe key segment, else a fresh uuid4."""
    context = event.get("requestContext")
    raw = context.get("requestId") if isinstance(context, dict) else None
    return contract.safe_request_id(raw)


def _success_body(task: contract.Task, settings: Settings, version: str) -> dict[str, Any]:
    meta = task.metadata
    location = contract.output_location(settings.bucket, meta.prefix, meta.id)
    if version == "v1alpha1":
        checkpoint = contract.requested_model(task.content or {})
        return {
            "id_task": meta.id,
            "sd_model_checkpoint": checkpoint,
            "output_location": location,
        }
    return {"id": meta.id, "runtime": meta.runtime, "output_location": location, "status": "queued"}


def _handle(event: Any, log: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(event, dict):
        return _error(400, "invalid_request", "the event is not an API Gateway proxy event")
    version, method = _route(event)
    log["api"] = version
    if version is None:
        return _error(404, "not_found", f"unknown path; POST to one of: /{', /'.join(ROUTES)}")
    if method != "POST":
        return _error(
            405,
            "method_not_allowed",
            f"{method or 'this method'} is not allowed; use POST",
            Allow="POST",
        )
    try:
        settings = _load_settings()
    except ConfigError as exc:
        log["config_error"] = str(exc)
        return _error(500, "internal_error", "the service is misconfigured")
    try:
        raw = _raw_body(event)
        if isinstance(raw, str):
            log["bytes"] = len(raw.encode("utf-8", "surrogatepass"))
        else:
            log["bytes"] = len(raw or b"")
        body = contract.parse_json_body(raw)
        parse = contract.parse_v1alpha2 if version == "v1alpha2" else contract.parse_v1alpha1
        task = parse(body, settings.runtimes)
    except contract.ContractError as exc:
        log["error_code"] = exc.code
        log["error_field"] = _log_field(exc.field)
        return _error(exc.status, exc.code, exc.message, exc.field)
    except (ValueError, TypeError, RecursionError) as exc:
        # A gap in validation: still the client's input, never a 5xx.
        log["error_code"] = "invalid_request"
        log["unexpected"] = type(exc).__name__
        return _error(400, "invalid_request", "the request could not be parsed")
    log.update(id=task.metadata.id, runtime=task.metadata.runtime, tasktype=task.metadata.tasktype)
    try:
        _publish(task, settings, log, _request_id(event))
    except contract.ContractError as exc:  # the final message would not fit in SNS
        log.update(error_code=exc.code, error_field=_log_field(exc.field))
        return _error(exc.status, exc.code, exc.message, exc.field)
    except OffloadConflict as exc:
        log.update(error_code="request_conflict", aws_error=str(exc))
        return _error(
            409, "request_conflict", "this request id was already used; send the request again"
        )
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
        log.update(error_code="publish_failed", aws_error=code, aws_operation=exc.operation_name)
        if code in _THROTTLING_CODES:
            return _error(
                503, "publish_failed", "the task queue is busy; retry later", **{"Retry-After": "1"}
            )
        return _error(502, "publish_failed", "the task could not be queued")
    except BotoCoreError as exc:  # connection errors, timeouts
        log.update(error_code="publish_failed", aws_error=type(exc).__name__)
        return _error(
            503,
            "publish_failed",
            "the task queue is unreachable; retry later",
            **{"Retry-After": "1"},
        )
    return _response(200, _success_body(task, settings, version))


def handler(event: Any, context: Any) -> dict[str, Any]:
    started = time.monotonic()
    log: dict[str, Any] = {"msg": "task_request", "offloaded": False}
    request_id = getattr(context, "aws_request_id", None)
    if request_id:
        log["request_id"] = request_id
    try:
        response = _handle(event, log)
    except Exception as exc:
        # Only the exception type and frames: its message could quote request content.
        log["unexpected"] = type(exc).__name__
        log["trace"] = "".join(traceback.format_tb(exc.__traceback__))
        response = _error(500, "internal_error", "internal error")
    log["status"] = response["statusCode"]
    log["latency_ms"] = round((time.monotonic() - started) * 1000, 1)
    level = logging.ERROR if response["statusCode"] >= 500 else logging.INFO
    logger.log(level, json.dumps(log, separators=(",", ":"), default=str))
    return response
