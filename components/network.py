"""Network: a VPC with private node subnets (awsx) or the user's own, plus an S3 gateway
endpoint so model reads and result writes do not pay NAT charges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx

from sdfleet.components.builders.karpenter import DISCOVERY_TAG
from sdfleet.components.config_model import NatGateways, NetworkConfig, config_default

_DEFAULT = partial(config_default, NetworkConfig)


@dataclass
class NetworkArgs:
    """Inputs of Network: a new VPC's shape, or the user's own VPC and subnets (all three, or
    none). Defaults are the stack configuration's (``sdfleet:network``)."""

    cluster_name: str
    """The EKS cluster's name, written into the Karpenter discovery tag of the node subnets."""
    vpc_id: str | None = _DEFAULT("vpc_id")
    """An existing VPC (vpc-...); unset creates one."""
    private_subnet_ids: Sequence[str] = field(
        default_factory=lambda: _DEFAULT("private_subnet_ids")
    )
    """With vpc_id: the private subnets nodes run in (they get the discovery tag)."""
    public_subnet_ids: Sequence[str] = field(default_factory=lambda: _DEFAULT("public_subnet_ids"))
    """With vpc_id: the public subnets for load balancers."""
    cidr_block: str = _DEFAULT("cidr_block")
    """CIDR block of a new VPC."""
    availability_zones: int = _DEFAULT("availability_zones")
    """Availability zones a new VPC spans (2-6)."""
    nat_gateways: NatGateways = _DEFAULT("nat_gateways")  # noqa: RUF009 (an enum member)
    """NAT gateways of a new VPC: ``single`` or ``onePerAz``."""
    s3_gateway_endpoint: bool = _DEFAULT("s3_gateway_endpoint")
    """Create an S3 gateway endpoint on the VPC's route tables (model reads skip the NAT)."""


class Network(pulumi.ComponentResource):
    """The cluster's network: a new VPC (private node subnets tagged for Karpenter, public
    subnets, NAT) or the user's VPC with its private subnets tagged, plus an optional S3
    gateway endpoint."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[Sequence[str]]
    public_subnet_ids: pulumi.Output[Sequence[str]]

    def __init__(
        self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("sdfleet:index:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        discovery = {DISCOVERY_TAG: args.cluster_name}
        if args.vpc_id:
            self.vpc_id = pulumi.Output.from_input(args.vpc_id)
            self.private_subnet_ids = pulumi.Output.from_input(args.private_subnet_ids)
            self.public_subnet_ids = pulumi.Output.from_input(args.public_subnet_ids)
            # Karpenter finds GPU node subnets by this tag; the subnets stay the user's.
            for i, subnet_id in enumerate(args.private_subnet_ids):
                aws.ec2.Tag(
                    f"{name}-subnet-{i}-discovery",
                    resource_id=subnet_id,
                    key=DISCOVERY_TAG,
                    value=args.cluster_name,
                    opts=child,
                )
        else:
            strategy = (
                awsx.ec2.NatGatewayStrategy.ONE_PER_AZ
                if NatGateways(args.nat_gateways) is NatGateways.ONE_PER_AZ
                else awsx.ec2.NatGatewayStrategy.SINGLE
            )
            vpc = awsx.ec2.Vpc(
                f"{name}-vpc",
                cidr_block=args.cidr_block,
                number_of_availability_zones=args.availability_zones,
                enable_dns_hostnames=True,
                enable_dns_support=True,
                nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(strategy=strategy),
                subnet_specs=[
                    awsx.ec2.SubnetSpecArgs(
                        type=awsx.ec2.SubnetType.PRIVATE,
                        cidr_mask=19,
                        tags={**discovery, "kubernetes.io/role/internal-elb": "1"},
                    ),
                    awsx.ec2.SubnetSpecArgs(
                        type=awsx.ec2.SubnetType.PUBLIC,
                        cidr_mask=22,
                        tags={"kubernetes.io/role/elb": "1"},
                    ),
                ],
                tags={"sdfleet:cluster": args.cluster_name},
                opts=child,
            )
            self.vpc_id = vpc.vpc_id
            self.private_subnet_ids = vpc.private_subnet_ids
            self.public_subnet_ids = vpc.public_subnet_ids

        if args.s3_gateway_endpoint:
            region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self))
            route_tables = aws.ec2.get_route_tables_output(
                vpc_id=self.vpc_id, opts=pulumi.InvokeOutputOptions(parent=self)
            )
            aws.ec2.VpcEndpoint(
                f"{name}-s3",
                vpc_id=self.vpc_id,
                service_name=region.region.apply(lambda r: f"com.amazonaws.{r}.s3"),
                vpc_endpoint_type="Gateway",
                route_table_ids=route_tables.ids,
                opts=child,
            )
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
            }
        )
