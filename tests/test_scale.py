"""Configs with 1, 4 and 16 runtimes synthesize, and every runtime gets its whole slice."""

from __future__ import annotations

import pytest

from sdfleet.bench_synth import stack_config
from sdfleet.invariants import check_all
from tests.conftest import synth_config


@pytest.mark.parametrize("runtimes", [1, 4, 16])
def test_many_runtimes_synthesize(runtimes: int) -> None:
    graph = synth_config(stack_config(runtimes))
    names = [r["name"] for r in stack_config(runtimes)["sdfleet:runtimes"]]
    queues = {q.name for q in graph.of_type("aws:sqs/queue:Queue")}
    for name in names:
        assert f"sdfleet-events-{name}-queue" in queues
        assert f"sdfleet-events-{name}-dlq" in queues
        graph.one("sdfleet:index:GpuNodePool", f"sdfleet-{name}-gpu")
    subscriptions = graph.of_type("aws:sns/topicSubscription:TopicSubscription")
    # Plus the unrouted catch-all and the webhook queue on the output topic.
    assert len(subscriptions) == runtimes + 2
    assert check_all(graph) == []
