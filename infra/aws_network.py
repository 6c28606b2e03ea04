"""AWS network for a Plinth region: VPC over N AZs, private + public subnets, NAT, endpoints.

GPU nodes live in the private subnets; they pull images through ECR interface endpoints
and weights through the S3 gateway endpoint, so the bulk of their traffic never crosses a
NAT gateway. One NAT per AZ by default (an AZ outage does not cut egress elsewhere);
``single_nat_gateway`` trades that for cost in dev stacks. VPC flow logs go to CloudWatch.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.exceptions import InfraConfigError
from infra.iam import Statement, policy_json, service_trust_policy
from infra.tags import StandardTags

DEFAULT_INTERFACE_ENDPOINTS: tuple[str, ...] = ("ecr.api", "ecr.dkr", "sts")
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)


@dataclass(frozen=True)
class SubnetPlan:
    private: list[str]
    public: list[str]


def plan_subnets(vpc_cidr: str, az_count: int) -> SubnetPlan:
    """Large private subnets (pods take VPC IPs with the VPC CNI) and small public ones.

    The VPC is cut in eight; the first ``az_count`` eighths are private subnets and the
    last eighth is cut into small public subnets (NAT gateways and load balancers only).
    """
    network = ipaddress.IPv4Network(vpc_cidr)
    eighths = list(network.subnets(prefixlen_diff=3))
    public_pool = list(eighths[-1].subnets(prefixlen_diff=3))
    return SubnetPlan(
        private=[str(n) for n in eighths[:az_count]],
        public=[str(n) for n in public_pool[:az_count]],
    )


@dataclass(frozen=True)
class AwsNetworkArgs:
    tags: StandardTags
    region: str
    cidr_block: str = "10.0.0.0/16"
    az_count: int = 3
    availability_zones: Sequence[str] | None = None  # None: the region's first available AZs
    single_nat_gateway: bool = False
    interface_endpoints: Sequence[str] = DEFAULT_INTERFACE_ENDPOINTS
    flow_log_retention_days: int = 30
    cluster_name: str | None = None  # tags subnets for the AWS load balancer controller

    def __post_init__(self) -> None:
        try:
            network = ipaddress.IPv4Network(self.cidr_block)
        except ValueError as exc:
            raise InfraConfigError("cidr_block", f"{self.cidr_block!r} is not a CIDR") from exc
        if not 16 <= network.prefixlen <= 20:
            raise InfraConfigError("cidr_block", f"prefix /{network.prefixlen} not in /16../20")
        if not 1 <= self.az_count <= 6:
            raise InfraConfigError("az_count", f"{self.az_count} not in 1..6")
        if self.availability_zones is not None and len(self.availability_zones) < self.az_count:
            raise InfraConfigError("availability_zones", f"fewer than az_count={self.az_count}")
        if self.flow_log_retention_days not in LOG_RETENTION_DAYS:
            raise InfraConfigError(
                "flow_log_retention_days",
                f"{self.flow_log_retention_days} is not a CloudWatch value",
            )


class AwsNetwork(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]
    private_route_table_ids: pulumi.Output[list[str]]

    def __init__(
        self, name: str, args: AwsNetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plinth:aws_network:AwsNetwork", name, None, opts)
        self._name, self._args = name, args
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags.aws("network")
        zones = self._zones()
        plan = plan_subnets(args.cidr_block, args.az_count)

        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr_block,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**tags, "Name": name},
            opts=child,
        )
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=child)
        public = self._public_subnets(vpc, igw, zones, plan.public)
        private, route_tables = self._private_subnets(vpc, zones, plan.private, public)
        self._endpoints(vpc, private, route_tables)
        self._flow_logs(vpc)

        self.vpc_id = vpc.id
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private])
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in public])
        self.private_route_table_ids = pulumi.Output.all(*[rt.id for rt in route_tables])
        self.register_outputs(
            {
                "vpc_id": self.vpc_id,
                "private_subnet_ids": self.private_subnet_ids,
                "public_subnet_ids": self.public_subnet_ids,
            }
        )

    def _zones(self) -> list[str]:
        if self._args.availability_zones is not None:
            return list(self._args.availability_zones)[: self._args.az_count]
        found = aws.get_availability_zones(
            state="available", opts=pulumi.InvokeOptions(parent=self)
        )
        if len(found.names) < self._args.az_count:
            raise InfraConfigError("az_count", f"region has only {len(found.names)} AZs")
        return list(found.names)[: self._args.az_count]

    def _subnet_tags(self, role: str, zone: str) -> dict[str, str]:
        tags = {**self._args.tags.aws("network"), "Name": f"{self._name}-{role}-{zone}"}
        tags[
            "kubernetes.io/role/elb" if role == "public" else "kubernetes.io/role/internal-elb"
        ] = "1"
        if self._args.cluster_name:
            tags[f"kubernetes.io/cluster/{self._args.cluster_name}"] = "shared"
        return tags

    def _public_subnets(
        self, vpc: aws.ec2.Vpc, igw: aws.ec2.InternetGateway, zones: list[str], cidrs: list[str]
    ) -> list[aws.ec2.Subnet]:
        child = pulumi.ResourceOptions(parent=self)
        tags = self._args.tags.aws("network")
        table = aws.ec2.RouteTable(f"{self._name}-public", vpc_id=vpc.id, tags=tags, opts=child)
        aws.ec2.Route(
            f"{self._name}-public-default",
            route_table_id=table.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
            opts=child,
        )
        subnets = []
        for zone, cidr in zip(zones, cidrs, strict=True):
            subnet = aws.ec2.Subnet(
                f"{self._name}-public-{zone}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zone,
                map_public_ip_on_launch=False,  # only NAT gateways and load balancers live here
                tags=self._subnet_tags("public", zone),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{self._name}-public-{zone}",
                subnet_id=subnet.id,
                route_table_id=table.id,
                opts=child,
            )
            subnets.append(subnet)
        return subnets

    def _nat_gateways(
        self, public: list[aws.ec2.Subnet], zones: list[str]
    ) -> list[aws.ec2.NatGateway]:
        child = pulumi.ResourceOptions(parent=self)
        tags = self._args.tags.aws("network")
        count = 1 if self._args.single_nat_gateway else len(public)
        gateways = []
        for subnet, zone in list(zip(public, zones, strict=True))[:count]:
            eip = aws.ec2.Eip(f"{self._name}-nat-{zone}", domain="vpc", tags=tags, opts=child)
            gateways.append(
                aws.ec2.NatGateway(
                    f"{self._name}-nat-{zone}",
                    allocation_id=eip.id,
                    subnet_id=subnet.id,
                    tags=tags,
                    opts=child,
                )
            )
        return gateways

    def _private_subnets(
        self, vpc: aws.ec2.Vpc, zones: list[str], cidrs: list[str], public: list[aws.ec2.Subnet]
    ) -> tuple[list[aws.ec2.Subnet], list[aws.ec2.RouteTable]]:
        child = pulumi.ResourceOptions(parent=self)
        tags = self._args.tags.aws("network")
        nats = self._nat_gateways(public, zones)
        subnets, tables = [], []
        for index, (zone, cidr) in enumerate(zip(zones, cidrs, strict=True)):
            subnet = aws.ec2.Subnet(
                f"{self._name}-private-{zone}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zone,
                tags=self._subnet_tags("private", zone),
                opts=child,
            )
            table = aws.ec2.RouteTable(
                f"{self._name}-private-{zone}", vpc_id=vpc.id, tags=tags, opts=child
            )
            aws.ec2.Route(
                f"{self._name}-private-{zone}-default",
                route_table_id=table.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nats[min(index, len(nats) - 1)].id,
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{self._name}-private-{zone}",
                subnet_id=subnet.id,
                route_table_id=table.id,
                opts=child,
            )
            subnets.append(subnet)
            tables.append(table)
        return subnets, tables

    def _endpoints(
        self, vpc: aws.ec2.Vpc, private: list[aws.ec2.Subnet], tables: list[aws.ec2.RouteTable]
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        tags = self._args.tags.aws("network")
        region = self._args.region
        aws.ec2.VpcEndpoint(
            f"{self._name}-s3",
            vpc_id=vpc.id,
            service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[t.id for t in tables],
            tags=tags,
            opts=child,
        )
        if not self._args.interface_endpoints:
            return
        https_in = aws.ec2.SecurityGroup(
            f"{self._name}-endpoints",
            vpc_id=vpc.id,
            description="HTTPS from inside the VPC to interface endpoints",
            ingress=[
                aws.ec2.SecurityGroupIngressArgs(
                    protocol="tcp", from_port=443, to_port=443, cidr_blocks=[self._args.cidr_block]
                )
            ],
            tags=tags,
            opts=child,
        )
        for service in self._args.interface_endpoints:
            aws.ec2.VpcEndpoint(
                f"{self._name}-{service.replace('.', '-')}",
                vpc_id=vpc.id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=[s.id for s in private],
                security_group_ids=[https_in.id],
                tags=tags,
                opts=child,
            )

    def _flow_logs(self, vpc: aws.ec2.Vpc) -> None:
        child = pulumi.ResourceOptions(parent=self)
        tags = self._args.tags.aws("network")
        group = aws.cloudwatch.LogGroup(
            f"{self._name}-flow-logs",
            name=f"/plinth/{self._name}/vpc-flow-logs",
            retention_in_days=self._args.flow_log_retention_days,
            tags=tags,
            opts=child,
        )
        role = aws.iam.Role(
            f"{self._name}-flow-logs",
            assume_role_policy=service_trust_policy("vpc-flow-logs.amazonaws.com"),
            tags=tags,
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{self._name}-flow-logs",
            role=role.id,
            policy=policy_json(
                [
                    Statement(
                        actions=[
                            "logs:CreateLogStream",
                            "logs:PutLogEvents",
                            "logs:DescribeLogStreams",
                        ],
                        resources=[group.arn, group.arn.apply(lambda arn: f"{arn}:*")],
                    )
                ]
            ),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{self._name}-flow-logs",
            vpc_id=vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags=tags,
            opts=child,
        )
