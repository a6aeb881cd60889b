"""``sdfleet sandbox``: the stack's data plane on one machine, for trying and building against
sdfleet without AWS or a GPU. See docs/sandbox.md.

- :mod:`.plane`: topics, queues, DLQs, bucket and task table on a moto server, from the builders.
- :mod:`.agents`: one ``python -m sdfleet.agent`` per runtime with the pod's environment.
- :mod:`.preview`: the built-in CPU preview servers (placeholder images labelled as such).
- :mod:`.sweeper`: the stack's DLQ sweeper on a thread.
- :mod:`.outputs`: ``--state DIR`` copies results out of the in-memory S3.
- :mod:`.run`: the command (argument parsing, start order, Ctrl-C).
"""
