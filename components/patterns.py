"""Value patterns shared by the config model and the builders, defined once."""

from __future__ import annotations

import re

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DURATION = re.compile(r"^([0-9]+(s|m|h))+$")
SNAPSHOT_ID = re.compile(r"^snap-[0-9a-f]{8,17}$")
BOTTLEROCKET_ALIAS = re.compile(r"^bottlerocket@v?[0-9]+\.[0-9]+\.[0-9]+$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
