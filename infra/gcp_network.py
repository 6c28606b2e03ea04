"""GCP network for a Plinth region: custom-mode VPC, one regional subnet with pod/service
secondary ranges (VPC-native GKE), Private Google Access, and Cloud NAT for private nodes."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from infra.exceptions import InfraConfigError
from infra.tags import StandardTags

PODS_RANGE = "pods"
SERVICES_RANGE = "services"


@dataclass(frozen=True)
class GcpNetworkArgs:
    tags: StandardTags
    region: str
    nodes_cidr: str = "10.10.0.0/20"
    pods_cidr: str = "10.16.0.0/14"
    services_cidr: str = "10.20.0.0/20"

    def __post_init__(self) -> None:
        ranges = {}
        for field in ("nodes_cidr", "pods_cidr", "services_cidr"):
            value = getattr(self, field)
            try:
                ranges[field] = ipaddress.ip_network(value)
            except ValueError as exc:
                raise InfraConfigError(field, f"{value!r} is not a CIDR") from exc
        names = list(ranges)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                if ranges[a].overlaps(ranges[b]):
                    raise InfraConfigError(b, f"{ranges[b]} overlaps {a} {ranges[a]}")


class GcpNetwork(pulumi.ComponentResource):
    network_id: pulumi.Output[str]
    network_self_link: pulumi.Output[str]
    subnetwork_self_link: pulumi.Output[str]

    def __init__(
        self, name: str, args: GcpNetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("plinth:gcp_network:GcpNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        network = gcp.compute.Network(
            f"{name}-vpc", auto_create_subnetworks=False, routing_mode="REGIONAL", opts=child
        )
        subnet = gcp.compute.Subnetwork(
            f"{name}-nodes",
            network=network.id,
            region=args.region,
            ip_cidr_range=args.nodes_cidr,
            private_ip_google_access=True,
            secondary_ip_ranges=[
                gcp.compute.SubnetworkSecondaryIpRangeArgs(
                    range_name=PODS_RANGE, ip_cidr_range=args.pods_cidr
                ),
                gcp.compute.SubnetworkSecondaryIpRangeArgs(
                    range_name=SERVICES_RANGE, ip_cidr_range=args.services_cidr
                ),
            ],
            log_config=gcp.compute.SubnetworkLogConfigArgs(
                aggregation_interval="INTERVAL_1_MIN",
                flow_sampling=0.5,
                metadata="INCLUDE_ALL_METADATA",
            ),
            opts=child,
        )
        router = gcp.compute.Router(
            f"{name}-router", network=network.id, region=args.region, opts=child
        )
        gcp.compute.RouterNat(
            f"{name}-nat",
            router=router.name,
            region=args.region,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
            opts=child,
        )
        self.network_id = network.id
        self.network_self_link = network.self_link
        self.subnetwork_self_link = subnet.self_link
        self.register_outputs(
            {
                "network_self_link": self.network_self_link,
                "subnetwork_self_link": self.subnetwork_self_link,
            }
        )
