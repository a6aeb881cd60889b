"""ModelStore: the bucket the runtimes read models from, new or imported read-only.

Layout the runtimes expect (see docs/compute-plane.md#buckets-and-models): ``Stable-diffusion/``, ``Lora/``, ``VAE/``,
``ControlNet/``, ``ESRGAN/``, ``embeddings/`` for SD WebUI; ``checkpoints/``, ``loras/``,
``vae/``, ``controlnet/``, ``upscale_models/``, ``embeddings/`` for ComfyUI.

The read-only policy for a runtime (``s3:ListBucket`` on the bucket, ``s3:GetObject`` on its
objects, optionally under a prefix) is built by
``sdfleet.components.builders.iam_platform.model_read_statements``, used by the Mountpoint driver's role
and by each runtime's pod role.
"""

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from sdfleet.components._bucket import secure_bucket


@dataclass
class ModelStoreArgs:
    # An existing bucket to read from; it is looked up, never modified.
    existing_bucket_name: str | None = None
    # Let `pulumi destroy` delete the bucket we create together with every object version in
    # it. Never applies to an existing bucket.
    force_destroy: bool = False


class ModelStore(pulumi.ComponentResource):
    """The bucket the runtimes read models from: a new one, or an existing one looked up and
    never modified."""

    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    managed: bool

    def __init__(
        self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:ModelStore", name, None, opts)
        if args.existing_bucket_name and args.force_destroy:
            raise ValueError(
                f"force_destroy: got True with existing_bucket_name "
                f"{args.existing_bucket_name!r}; allowed: False (an existing bucket is only read)"
            )
        if args.existing_bucket_name:
            # A lookup (not `import`), so Pulumi never owns or changes the user's bucket.
            existing = aws.s3.get_bucket_output(
                bucket=args.existing_bucket_name, opts=pulumi.InvokeOutputOptions(parent=self)
            )
            self.bucket_name = existing.bucket
            self.bucket_arn = existing.arn
            self.managed = False
        else:
            bucket = secure_bucket(
                f"{name}-models", self, versioning=True, force_destroy=args.force_destroy
            )
            self.bucket_name = bucket.bucket
            self.bucket_arn = bucket.arn
            self.managed = True
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn})
