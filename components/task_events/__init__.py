"""The task-event Lambdas (issue 11): the DLQ sweeper that gives every dead-lettered task its
final word, and the webhook delivery function. Standard library and boto3 only; the component
``sdfleet.components.task_events_component`` ships them with the agent modules they import."""
