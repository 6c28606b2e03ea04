"""AwsNetwork under Pulumi mocks: subnets over 3 AZs, NAT layout, endpoints, flow logs."""

from __future__ import annotations

import ipaddress
import json

import pytest

from infra.aws_network import AwsNetwork, AwsNetworkArgs, plan_subnets
from infra.exceptions import InfraConfigError
from infra.policies import check


def test_plan_subnets_are_disjoint_and_inside_the_vpc() -> None:
    plan = plan_subnets("10.0.0.0/16", 3)
    vpc = ipaddress.ip_network("10.0.0.0/16")
    nets = [ipaddress.ip_network(c) for c in plan.private + plan.public]
    assert len(plan.private) == 3 and len(plan.public) == 3
    assert all(n.subnet_of(vpc) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    assert all(ipaddress.ip_network(c).prefixlen == 19 for c in plan.private)


def test_network_spans_three_azs_with_a_nat_per_az(run, tags) -> None:
    result = run(
        lambda: {"vpc": AwsNetwork("net", AwsNetworkArgs(tags=tags, region="us-east-1")).vpc_id}
    )
    subnets = result.of_type("aws:ec2/subnet:Subnet")
    zones = {s.inputs["availabilityZone"] for s in subnets}
    assert zones == {"us-east-1a", "us-east-1b", "us-east-1c"}
    private = [s for s in subnets if "kubernetes.io/role/internal-elb" in s.inputs["tags"]]
    public = [s for s in subnets if "kubernetes.io/role/elb" in s.inputs["tags"]]
    assert len(private) == 3 and len(public) == 3
    assert len(result.of_type("aws:ec2/natGateway:NatGateway")) == 3
    # Each private route table sends 0.0.0.0/0 to a NAT gateway, never to the internet gateway.
    private_routes = [
        r for r in result.of_type("aws:ec2/route:Route") if "natGatewayId" in r.inputs
    ]
    assert len(private_routes) == 3
    assert {r.inputs["natGatewayId"] for r in private_routes} == {
        n.id for n in result.of_type("aws:ec2/natGateway:NatGateway")
    }
    assert result.outputs["vpc"] == "net-vpc-id"


def test_single_nat_gateway_option(run, tags) -> None:
    args = AwsNetworkArgs(tags=tags, region="us-east-1", single_nat_gateway=True)
    result = run(lambda: {"vpc": AwsNetwork("net", args).vpc_id})
    nats = result.of_type("aws:ec2/natGateway:NatGateway")
    assert len(nats) == 1
    routes = [r for r in result.of_type("aws:ec2/route:Route") if "natGatewayId" in r.inputs]
    assert {r.inputs["natGatewayId"] for r in routes} == {nats[0].id}


def test_endpoints_gateway_s3_and_private_interface_endpoints(run, tags) -> None:
    result = run(
        lambda: {"vpc": AwsNetwork("net", AwsNetworkArgs(tags=tags, region="us-west-2")).vpc_id}
    )
    endpoints = {
        e.inputs["serviceName"]: e.inputs for e in result.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    }
    assert endpoints["com.amazonaws.us-west-2.s3"]["vpcEndpointType"] == "Gateway"
    assert len(endpoints["com.amazonaws.us-west-2.s3"]["routeTableIds"]) == 3
    for service in ("ecr.api", "ecr.dkr", "sts"):
        endpoint = endpoints[f"com.amazonaws.us-west-2.{service}"]
        assert endpoint["vpcEndpointType"] == "Interface"
        assert endpoint["privateDnsEnabled"] is True
        assert len(endpoint["subnetIds"]) == 3


def test_flow_logs_go_to_cloudwatch_through_a_scoped_role(run, tags) -> None:
    result = run(
        lambda: {"vpc": AwsNetwork("net", AwsNetworkArgs(tags=tags, region="us-east-1")).vpc_id}
    )
    (flow_log,) = result.of_type("aws:ec2/flowLog:FlowLog")
    (group,) = result.of_type("aws:cloudwatch/logGroup:LogGroup")
    assert flow_log.inputs["trafficType"] == "ALL"
    assert flow_log.inputs["logDestinationType"] == "cloud-watch-logs"
    assert flow_log.inputs["logDestination"] == group.outputs["arn"]
    assert group.inputs["retentionInDays"] == 30
    (policy,) = result.of_type("aws:iam/rolePolicy:RolePolicy")
    resources = json.loads(policy.inputs["policy"])["Statement"][0]["Resource"]
    assert resources == [group.outputs["arn"], group.outputs["arn"] + ":*"]
    assert check(result.resources) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"cidr_block": "10.0.0.0/8"}, "cidr_block"),
        ({"cidr_block": "not-a-cidr"}, "cidr_block"),
        ({"az_count": 7}, "az_count"),
        ({"flow_log_retention_days": 42}, "flow_log_retention_days"),
    ],
)
def test_bad_args_name_the_field(tags, kwargs, field) -> None:
    with pytest.raises(InfraConfigError) as excinfo:
        AwsNetworkArgs(tags=tags, region="us-east-1", **kwargs)
    assert excinfo.value.field == field
