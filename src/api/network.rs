//! Handlers for VPC networking: `/v1/vpcs`, `/v1/subnets`, `/v1/security-groups`,
//! `/v1/network-interfaces`, `/v1/eips`, `/v1/nat-gateways`, `/v1/port-forwards` and
//! `/v1/load-balancers`, each the generic handlers of [`super::kinds`] over its spec type.

use super::kinds::{kind_patch, kind_routes};
use crate::site::net_model::{EipSpec, LoadBalancerSpec, NatGatewaySpec, NetworkInterfaceSpec, PortForwardSpec, SecurityGroupSpec, SubnetSpec, VpcSpec};

kind_routes!(
    VpcSpec,
    "/v1/vpcs",
    "/v1/vpcs/{id}",
    "vpcs",
    list_vpcs,
    create_vpc,
    get_vpc,
    delete_vpc,
    "Create a VPC (`VpcSpec`: a private `cidr`, /16 to /28).",
    "Delete a VPC; 409 while a subnet, security group or load balancer is in it."
);
kind_routes!(
    SubnetSpec,
    "/v1/subnets",
    "/v1/subnets/{id}",
    "subnets",
    list_subnets,
    create_subnet,
    get_subnet,
    delete_subnet,
    "Create a subnet of a VPC (`SubnetSpec`: `vpc` and a `cidr` inside it, overlapping no sibling).",
    "Delete a subnet; 409 while a network interface, NAT gateway or load balancer listener is in it."
);
kind_routes!(
    SecurityGroupSpec,
    "/v1/security-groups",
    "/v1/security-groups/{id}",
    "security-groups",
    list_security_groups,
    create_security_group,
    get_security_group,
    delete_security_group,
    "Create a security group of a VPC (`SecurityGroupSpec`: `vpc` and `ingress` rules).",
    "Delete a security group; 409 while an interface uses it or another group's rule names it."
);
kind_routes!(
    NetworkInterfaceSpec,
    "/v1/network-interfaces",
    "/v1/network-interfaces/{id}",
    "network-interfaces",
    list_network_interfaces,
    create_network_interface,
    get_network_interface,
    delete_network_interface,
    "Create a network interface in a subnet (`NetworkInterfaceSpec`): its address is assigned, or checked when given.",
    "Delete a network interface; 409 while a workload, an elastic IP or a port forward uses it."
);
kind_routes!(
    EipSpec,
    "/v1/eips",
    "/v1/eips/{id}",
    "eips",
    list_eips,
    create_eip,
    get_eip,
    delete_eip,
    "Allocate an elastic IP from the site's public range (`EipSpec`), optionally associated with a network interface.",
    "Release an elastic IP; 409 while it is associated, used by a NAT gateway or listened on."
);
kind_routes!(
    NatGatewaySpec,
    "/v1/nat-gateways",
    "/v1/nat-gateways/{id}",
    "nat-gateways",
    list_nat_gateways,
    create_nat_gateway,
    get_nat_gateway,
    delete_nat_gateway,
    "Create a NAT gateway for a subnet (`NatGatewaySpec`); 409 when the subnet has one.",
    "Delete a NAT gateway."
);
kind_routes!(
    PortForwardSpec,
    "/v1/port-forwards",
    "/v1/port-forwards/{id}",
    "port-forwards",
    list_port_forwards,
    create_port_forward,
    get_port_forward,
    delete_port_forward,
    "Forward a port of the site's uplink address to a network interface (`PortForwardSpec`).",
    "Delete a port forward."
);
kind_routes!(
    LoadBalancerSpec,
    "/v1/load-balancers",
    "/v1/load-balancers/{id}",
    "load-balancers",
    list_load_balancers,
    create_load_balancer,
    get_load_balancer,
    delete_load_balancer,
    "Create an L4 load balancer (`LoadBalancerSpec`: a public or internal listener and backends).",
    "Delete a load balancer."
);

kind_patch!(
    LoadBalancerSpec,
    "/v1/load-balancers/{id}",
    "load-balancers",
    update_load_balancer,
    "Change a load balancer's backends, affinity or health check (RFC 7386 merge patch of the spec; `backends` is replaced as a whole). The VPC and listener are fixed."
);
kind_patch!(
    EipSpec,
    "/v1/eips/{id}",
    "eips",
    update_eip,
    "Associate an elastic IP with a network interface (`{\"spec\": {\"network_interface\": \"a\"}}`), disassociate it (`null`) or change its `bandwidth_mbps`. 409 when the interface already has one."
);
kind_patch!(
    SecurityGroupSpec,
    "/v1/security-groups/{id}",
    "security-groups",
    update_security_group,
    "Change a security group's rules (RFC 7386 merge patch of the spec; `ingress` is replaced as a whole) or labels. Takes effect on the VPC router atomically."
);
