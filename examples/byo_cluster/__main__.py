"""Run one sdfleet runtime on an EKS cluster this program does not manage.

The cluster must already run Karpenter (v1), KEDA (with an EKS Pod Identity association on
``keda/keda-operator`` allowing ``sqs:GetQueueAttributes`` on the queue), the Mountpoint for S3
CSI driver v2 and the eks-pod-identity-agent addon. The queue, output topic and buckets exist
too (for example from an sdfleet stack's outputs). See examples/README.md.
"""

import pulumi
import pulumi_kubernetes as k8s

from sdfleet.components.agent_image import AgentImage, AgentImageArgs
from sdfleet.components.builders.enums import RuntimeType
from sdfleet.components.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
from sdfleet.components.sd_runtime import SdRuntime, SdRuntimeArgs

config = pulumi.Config()
aws_config = pulumi.Config("aws")
runtime = config.get("runtimeName") or "sd15"
runtime_type = config.get("runtimeType") or "sdwebui"
region = aws_config.require("region")
cluster_name = config.require("clusterName")
spot_ratio = config.get_float("spotRatio")

provider = k8s.Provider("existing-cluster", kubeconfig=config.require_secret("kubeconfig"))

# A prebuilt agent image by digest, or build and push one from this checkout's agent/.
prebuilt = config.get("agentImage")
agent = AgentImage("agent", AgentImageArgs(image_ref=prebuilt))

pool = GpuNodePool(
    f"{runtime}-gpu",
    GpuNodePoolArgs(
        runtime_name=runtime,
        cluster_name=cluster_name,
        # The role your Karpenter nodes already use (it needs an EC2_LINUX access entry).
        node_role_name=config.require("nodeRoleName"),
        spot_ratio=0.5 if spot_ratio is None else spot_ratio,
        instance_types=(config.get("instanceTypes") or "g6.2xlarge,g5.2xlarge").split(","),
    ),
    pulumi.ResourceOptions(provider=provider),
)

sd = SdRuntime(
    runtime,
    SdRuntimeArgs(
        runtime_name=runtime,
        runtime_type=RuntimeType(runtime_type),
        namespace=config.get("namespace") or runtime,
        cluster_name=cluster_name,
        region=region,
        queue_url=config.require("queueUrl"),
        queue_arn=config.require("queueArn"),
        output_topic_arn=config.require("outputTopicArn"),
        output_bucket_name=config.require("outputBucket"),
        output_bucket_arn=f"arn:aws:s3:::{config.require('outputBucket')}",
        model_bucket_name=config.require("modelBucket"),
        model_prefix=config.get("modelPrefix"),
        model_filename=config.get("modelFilename"),
        agent_image=agent.ref,
        scheduling=pool.scheduling,
        server_image=config.get("serverImage"),
    ),
    # The NodePools must exist before pods that can only run on them.
    pulumi.ResourceOptions(provider=provider, depends_on=[pool]),
)

pulumi.export("namespace", sd.namespace)
pulumi.export("deployment", sd.deployment_name)
pulumi.export("roleArn", sd.role_arn)
pulumi.export("agentImage", agent.ref)
