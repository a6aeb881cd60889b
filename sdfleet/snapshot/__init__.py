"""Image-cache snapshots for the GPU nodes: ``sdfleet snapshot build`` and ``check``.

A snapshot of a Bottlerocket data volume with the stack's images already in containerd;
``runtimes[i].gpu.snapshotId`` makes new GPU nodes boot their data volume from it. See
docs/image-cache.md for the trade-offs against faster pulls (EC2NodeClass user data).
"""
