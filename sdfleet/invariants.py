"""Security invariants over a recorded resource graph (see :mod:`sdfleet.mocking`).

Run by the tests on every stack the suite synthesizes, and by ``sdfleet synth``. The rules
themselves live in :mod:`sdfleet.policy` (shared with ``sdfleet check`` and the Pulumi policy
pack); docs/policy-checks.md lists them.
"""

from __future__ import annotations

from sdfleet.mocking import Recorder
from sdfleet.policy import Finding, from_recorder, run_rules
from sdfleet.policy.allowlists import RESOURCE_STAR_ACTIONS
from sdfleet.policy.data_rules import SINK_QUEUE_TAG

__all__ = ["SINK_QUEUE_TAG", "check_all", "findings", "resource_star_allowed_actions"]


def resource_star_allowed_actions() -> frozenset[str]:
    """The event plane's and the compute plane's describe-style actions."""
    return RESOURCE_STAR_ACTIONS


def findings(recorder: Recorder) -> list[Finding]:
    return run_rules(from_recorder(recorder.resources))


def check_all(recorder: Recorder) -> list[str]:
    """One line per finding: ``<type> <name>: <message> [<rule id>]``; [] when all hold."""
    return [str(f) for f in findings(recorder)]
