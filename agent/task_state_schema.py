"""Names of the task table's attributes and states (stdlib only).

The store (``sdfleet.agent.task_state``) and the table's infrastructure description
(``sdfleet.components.builders.task_table``) both read these, so the key and the TTL attribute
the table is created with are the ones the code writes. The item schema is documented in
``sdfleet.agent.task_state``.
"""

from __future__ import annotations

from typing import Final

# The partition key (the task id, a string). There is no sort key and no index.
TASK_ID: Final = "task_id"
# Epoch seconds after which DynamoDB may delete the item (the table's TTL attribute).
EXPIRES_AT: Final = "expires_at"

STATE: Final = "state"
RUNTIME: Final = "runtime"
API_KEY_ID: Final = "api_key_id"
CREATED_BY: Final = "created_by"
WRITE_TOKEN: Final = "write_token"
ATTEMPTS: Final = "attempts"
QUEUED_AT: Final = "queued_at"
STARTED_AT: Final = "started_at"
LAST_STARTED_AT: Final = "last_started_at"
FINISHED_AT: Final = "finished_at"
UPDATED_AT: Final = "updated_at"
ERROR: Final = "error"
OUTPUT_BUCKET: Final = "output_bucket"
OUTPUT_KEYS: Final = "output_keys"
# Reserved for webhook delivery (written by the delivery Lambda, not by this module).
WEBHOOK_LAST_STATUS: Final = "webhook_last_status"
WEBHOOK_ATTEMPTS: Final = "webhook_attempts"
WEBHOOK_LAST_ATTEMPT_AT: Final = "webhook_last_attempt_at"
# When ``sdfleet dlq redrive`` put a dead-lettered task back to queued (epoch ms).
REDRIVEN_AT: Final = "redriven_at"
# The X-Ray trace id of the request that submitted the task (``1-xxxxxxxx-...``), if traced.
TRACE_ID: Final = "trace_id"
# The error code the DLQ sweeper writes; only a task failed with it may be requeued.
DEAD_LETTERED: Final = "dead_lettered"

# States; the strings are the notification's ``status`` values (sdfleet.agent.contract).
QUEUED: Final = "queued"
RUNNING: Final = "running"
COMPLETED: Final = "completed"
FAILED: Final = "failed"
STATES: Final = (QUEUED, RUNNING, COMPLETED, FAILED)
FINAL_STATES: Final = frozenset({COMPLETED, FAILED})
# A transition is allowed only out of these (forward-only: nothing leaves a final state).
OPEN_STATES: Final = (QUEUED, RUNNING)

# Who wrote the record first: the API Lambda, or the agent for a task sent straight to SNS.
CREATED_BY_API: Final = "api"
CREATED_BY_AGENT: Final = "agent"

DEFAULT_TTL_SECONDS: Final = 7 * 24 * 3600
# Error messages are stored for the status API, not as logs: long server traces are cut.
MAX_ERROR_MESSAGE_CHARS: Final = 2048
