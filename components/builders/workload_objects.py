"""Pure builders for a runtime's plain Kubernetes objects: Namespace, ServiceAccount and the
model PersistentVolume/PersistentVolumeClaim (Mountpoint for S3 CSI driver v2)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sdfleet.components.builders.errors import check_name, fail
from sdfleet.components.builders.workload_checks import (
    _check_int,
    _check_quantity,
    _meta,
)

CSI_DRIVER = "s3.csi.aws.com"


# ------------------------------------------------------------------------------------------
# Namespace, ServiceAccount


def namespace(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    check_name("namespace", name)
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name, labels=labels)}


def service_account(
    name: str, namespace: str, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The runtime's service account; its AWS role comes from a Pod Identity association (no
    annotation). Its pods turn the API token automount off and mount it into the agent only
    (:func:`runtime_deployment`); Pod Identity's own token is a separate projected volume that
    its webhook adds whatever the automount setting."""
    check_name("service_account", name)
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, namespace, labels),
    }


# ------------------------------------------------------------------------------------------
# Models: PersistentVolume + PersistentVolumeClaim


def model_mount_options(
    *,
    region: str,
    prefix: str | None = None,
    metadata_ttl: str = "indefinite",
    maximum_throughput_gbps: int | None = None,
) -> list[str]:
    """Mountpoint flags for a read-only model mount.

    ``region`` is always given: under IMDS hop limit 1 Mountpoint pods cannot discover it.
    ``allow-other`` lets a server running as any uid read the files. ``metadata-ttl
    indefinite`` suits a model bucket that only gains files (new files need a pod restart to be
    seen either way: the servers scan models at start); use a number of seconds otherwise.
    """
    if not isinstance(region, str) or not re.match(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$", region):
        raise fail("region", region, "an AWS region such as 'us-west-2'")
    options = ["read-only", "allow-other", f"region {region}"]
    if prefix:
        if prefix.startswith("/") or not prefix.endswith("/"):
            raise fail("modelPrefix", prefix, "a key prefix ending with '/', e.g. 'sd15/'")
        options.append(f"prefix {prefix}")
    if metadata_ttl not in ("indefinite", "minimal") and not metadata_ttl.isdigit():
        raise fail("metadataTtl", metadata_ttl, "'indefinite', 'minimal' or seconds")
    options.append(f"metadata-ttl {metadata_ttl}")
    if maximum_throughput_gbps is not None:
        _check_int("maximumThroughputGbps", maximum_throughput_gbps, 1, 400)
        options.append(f"maximum-throughput-gbps {maximum_throughput_gbps}")
    return options


def model_volume(
    *,
    name: str,
    volume_handle: str,
    bucket_name: str,
    region: str,
    claim_name: str,
    claim_namespace: str,
    prefix: str | None = None,
    cache_size_limit: str | None = None,
    metadata_ttl: str = "indefinite",
    maximum_throughput_gbps: int | None = None,
) -> dict[str, Any]:
    """A static, read-only PersistentVolume on the model bucket (cluster-scoped).

    ``volume_handle`` must be unique across all PVs in the cluster (duplicates leave pods in
    ContainerCreating): use one per runtime. ``cache_size_limit`` (e.g. "20Gi") turns on
    Mountpoint's data cache in an emptyDir on the node's data volume, so a pod restarted on the
    same node reads the weights locally.
    """
    check_name("pv name", name, max_len=253)
    if not volume_handle or not isinstance(volume_handle, str):
        raise fail("volume_handle", volume_handle, "a non-empty string unique in the cluster")
    if not isinstance(bucket_name, str) or not re.match(
        r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", bucket_name
    ):
        raise fail("bucket_name", bucket_name, "an S3 bucket name")
    attributes: dict[str, str] = {"bucketName": bucket_name}
    if cache_size_limit is not None:
        _check_quantity("cacheSizeLimit", cache_size_limit)
        attributes["cache"] = "emptyDir"
        attributes["cacheEmptyDirSizeLimit"] = cache_size_limit
    spec: dict[str, Any] = {
        # Required by Kubernetes, ignored by the driver.
        "capacity": {"storage": "1Ti"},
        "accessModes": ["ReadOnlyMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": "",
        "claimRef": {"namespace": claim_namespace, "name": claim_name},
        "mountOptions": model_mount_options(
            region=region,
            prefix=prefix,
            metadata_ttl=metadata_ttl,
            maximum_throughput_gbps=maximum_throughput_gbps,
        ),
        "csi": {
            "driver": CSI_DRIVER,
            "volumeHandle": volume_handle,
            "readOnly": True,
            "volumeAttributes": attributes,
        },
    }
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": _meta(name), "spec": spec}


def model_claim(*, name: str, namespace: str, volume_name: str) -> dict[str, Any]:
    """The PVC bound to :func:`model_volume` by name."""
    check_name("pvc name", name, max_len=253)
    spec: dict[str, Any] = {
        "accessModes": ["ReadOnlyMany"],
        "storageClassName": "",
        "volumeName": volume_name,
        "resources": {"requests": {"storage": "1Ti"}},
    }
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(name, namespace),
        "spec": spec,
    }
