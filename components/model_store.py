"""ModelStore: the bucket the runtimes read models from, new or imported read-only.

Layout the runtimes expect (see docs/compute-plane.md#buckets-and-models): ``Stable-diffusion/``, ``Lora/``, ``VAE/``,
``ControlNet/``, ``ESRGAN/``, ``embeddings/`` for SD WebUI; ``checkpoints/``, ``loras/``,
``vae/``, ``controlnet/``, ``upscale_models/``, ``embeddings/`` for ComfyUI.

The read-only policy for a runtime (``s3:ListBucket`` on the bucket, ``s3:GetObject`` on its
objects, optionally under a prefix) is built by
``sdfleet.components.builders.iam.model_read_statements``, used by the Mountpoint driver's role
and by each runtime's pod role.
"""

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from sdfleet.components._bucket import secure_bucket
from sdfleet.components._inputs import as_args, none_means_default
from sdfleet.components.config_model import ModelsConfig, config_default


@dataclass
class ModelStoreArgs:
    """Inputs of ModelStore: create a versioned model bucket, or read an existing one.
    Defaults are the stack configuration's (``sdfleet:models``)."""

    existing_bucket_name: str | None = config_default(ModelsConfig, "bucket_name")
    """An existing bucket to read models from; it is looked up, never modified. Unset creates
    a new bucket."""
    force_destroy: bool | None = config_default(ModelsConfig, "force_destroy")
    """Let ``pulumi destroy`` delete the bucket it created together with every object version
    in it. Must be false with existing_bucket_name."""

    def __post_init__(self) -> None:
        none_means_default(self)


class ModelStore(pulumi.ComponentResource):
    """The bucket the runtimes read models from: a new one, or an existing one looked up and
    never modified."""

    bucket_name: pulumi.Output[str]
    """Name of the model bucket."""
    bucket_arn: pulumi.Output[str]
    """ARN of the model bucket."""
    managed: bool
    """Whether this component created the bucket (false for an existing one)."""

    def __init__(
        self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:ModelStore", name, None, opts)
        args = as_args(ModelStoreArgs, args)
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
                f"{name}-models", self, versioning=True, force_destroy=bool(args.force_destroy)
            )
            self.bucket_name = bucket.bucket
            self.bucket_arn = bucket.arn
            self.managed = True
        self.register_outputs({"bucket_name": self.bucket_name, "bucket_arn": self.bucket_arn})
