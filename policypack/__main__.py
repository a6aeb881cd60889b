"""Pulumi policy pack entry point: serves the rules of :mod:`sdfleet.policy.pack`.

Nothing is defined here; the policies (and their tests) live in sdfleet/policy/pack.py.
"""

import sys
from pathlib import Path

# Import sdfleet from this repository even if the virtualenv has no editable install of it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import PolicyPack

from sdfleet.policy.pack import PACK_NAME, policies

PolicyPack(name=PACK_NAME, policies=policies())
