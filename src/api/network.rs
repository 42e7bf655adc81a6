//! Handlers for VPC networking: `/v1/vpcs`, `/v1/subnets`, `/v1/security-groups`,
//! `/v1/network-interfaces`, `/v1/eips`, `/v1/nat-gateways`, `/v1/port-forwards` and
//! `/v1/load-balancers`. Reads need the viewer role,
//! changes the member role.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::{Auth, scope};
use super::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use super::resources::{ListQuery, ListResponse, ProjectQuery, UpdateRequest, created, if_match, item, list_kind};
use crate::site::Kind;
use crate::site::auth::{Principal, Role};

/// Body of a create: name, labels, and the kind's spec (`VpcSpec`, `SubnetSpec`,
/// `SecurityGroupSpec` or `NetworkInterfaceSpec`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub spec: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

async fn list(app: &AppState, p: &Principal, kind: Kind, q: &ListQuery) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let pc = scope(app, p, q.project.as_deref()).await?;
    list_kind(app, kind, Some(pc), q).await
}

async fn get(app: &AppState, p: &Principal, kind: Kind, id: String, q: &ProjectQuery) -> Result<Response, ApiError> {
    p.require(Role::Viewer)?;
    let pc = scope(app, p, q.project.as_deref()).await?;
    Ok(item(app.site.run(move |s| s.get(kind, Some(&pc), &id)).await?))
}

async fn create(app: &AppState, p: &Principal, kind: Kind, q: &ProjectQuery, b: NetworkCreate) -> Result<Response, ApiError> {
    p.require(Role::Member)?;
    let pc = scope(app, p, q.project.as_deref()).await?;
    let r = app
        .site
        .run(move |s| match kind {
            Kind::Vpc => s.create_vpc(&pc, &b.name, &b.labels, b.spec),
            Kind::Subnet => s.create_subnet(&pc, &b.name, &b.labels, b.spec),
            Kind::SecurityGroup => s.create_security_group(&pc, &b.name, &b.labels, b.spec),
            Kind::Eip => s.create_eip(&pc, &b.name, &b.labels, b.spec),
            Kind::NatGateway => s.create_nat_gateway(&pc, &b.name, &b.labels, b.spec),
            Kind::PortForward => s.create_port_forward(&pc, &b.name, &b.labels, b.spec),
            Kind::LoadBalancer => s.create_load_balancer(&pc, &b.name, &b.labels, b.spec),
            _ => s.create_network_interface(&pc, &b.name, &b.labels, b.spec),
        })
        .await?;
    Ok(created(kind, &r))
}

async fn update(app: &AppState, p: &Principal, kind: Kind, id: String, q: &ProjectQuery, headers: &HeaderMap, b: UpdateRequest) -> Result<Response, ApiError> {
    p.require(Role::Member)?;
    let pc = scope(app, p, q.project.as_deref()).await?;
    let g = if_match(headers)?;
    let r = app
        .site
        .run(move |s| match kind {
            Kind::Eip => s.update_eip(&pc, &id, g, b.labels.as_ref(), b.spec.as_ref()),
            Kind::LoadBalancer => s.update_load_balancer(&pc, &id, g, b.labels.as_ref(), b.spec.as_ref()),
            _ => s.update_security_group(&pc, &id, g, b.labels.as_ref(), b.spec.as_ref()),
        })
        .await?;
    Ok(item(r))
}

async fn delete(app: &AppState, p: &Principal, kind: Kind, id: String, q: &ProjectQuery) -> Result<Response, ApiError> {
    p.require(Role::Member)?;
    let pc = scope(app, p, q.project.as_deref()).await?;
    app.site
        .run(move |s| match kind {
            Kind::Eip | Kind::NatGateway | Kind::PortForward | Kind::LoadBalancer => s.delete_public_resource(kind, &pc, &id),
            _ => s.delete_network_resource(kind, &pc, &id),
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

macro_rules! network_kind {
    ($kind:expr, $path:literal, $item:literal, $tag:literal, $list:ident, $create:ident, $get:ident, $delete:ident) => {
        #[doc = concat!("List ", $tag, " of the project.")]
        #[utoipa::path(get, path = $path, tag = $tag, params(ListQuery), responses((status = 200, body = ListResponse)))]
        pub async fn $list(State(app): State<AppState>, Auth(p): Auth, ApiQuery(q): ApiQuery<ListQuery>) -> Result<Response, ApiError> {
            list(&app, &p, $kind, &q).await
        }

        #[doc = concat!("Create one of the project's ", $tag, ".")]
        #[utoipa::path(post, path = $path, tag = $tag, params(ProjectQuery), request_body = NetworkCreate, responses((status = 201, body = crate::site::Resource), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
        pub async fn $create(
            State(app): State<AppState>,
            Auth(p): Auth,
            ApiQuery(q): ApiQuery<ProjectQuery>,
            ApiJson(b): ApiJson<NetworkCreate>,
        ) -> Result<Response, ApiError> {
            create(&app, &p, $kind, &q, b).await
        }

        #[doc = concat!("Get one of the project's ", $tag, " by id or name.")]
        #[utoipa::path(get, path = $item, tag = $tag, params(("id" = String, Path, description = "id or name"), ProjectQuery), responses((status = 200, body = crate::site::Resource), (status = 404, body = ErrorBody)))]
        pub async fn $get(
            State(app): State<AppState>,
            Auth(p): Auth,
            Path(id): Path<String>,
            ApiQuery(q): ApiQuery<ProjectQuery>,
        ) -> Result<Response, ApiError> {
            get(&app, &p, $kind, id, &q).await
        }

        #[doc = concat!("Delete one of the project's ", $tag, "; 409 while it is in use.")]
        #[utoipa::path(delete, path = $item, tag = $tag, params(("id" = String, Path, description = "id or name"), ProjectQuery), responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
        pub async fn $delete(
            State(app): State<AppState>,
            Auth(p): Auth,
            Path(id): Path<String>,
            ApiQuery(q): ApiQuery<ProjectQuery>,
        ) -> Result<Response, ApiError> {
            delete(&app, &p, $kind, id, &q).await
        }
    };
}

network_kind!(Kind::Vpc, "/v1/vpcs", "/v1/vpcs/{id}", "vpcs", list_vpcs, create_vpc, get_vpc, delete_vpc);
network_kind!(Kind::Subnet, "/v1/subnets", "/v1/subnets/{id}", "subnets", list_subnets, create_subnet, get_subnet, delete_subnet);
network_kind!(
    Kind::SecurityGroup,
    "/v1/security-groups",
    "/v1/security-groups/{id}",
    "security-groups",
    list_security_groups,
    create_security_group,
    get_security_group,
    delete_security_group
);
network_kind!(
    Kind::NetworkInterface,
    "/v1/network-interfaces",
    "/v1/network-interfaces/{id}",
    "network-interfaces",
    list_network_interfaces,
    create_network_interface,
    get_network_interface,
    delete_network_interface
);

network_kind!(Kind::Eip, "/v1/eips", "/v1/eips/{id}", "eips", list_eips, create_eip, get_eip, delete_eip);
network_kind!(
    Kind::NatGateway,
    "/v1/nat-gateways",
    "/v1/nat-gateways/{id}",
    "nat-gateways",
    list_nat_gateways,
    create_nat_gateway,
    get_nat_gateway,
    delete_nat_gateway
);

network_kind!(
    Kind::PortForward,
    "/v1/port-forwards",
    "/v1/port-forwards/{id}",
    "port-forwards",
    list_port_forwards,
    create_port_forward,
    get_port_forward,
    delete_port_forward
);
network_kind!(
    Kind::LoadBalancer,
    "/v1/load-balancers",
    "/v1/load-balancers/{id}",
    "load-balancers",
    list_load_balancers,
    create_load_balancer,
    get_load_balancer,
    delete_load_balancer
);

macro_rules! network_patch {
    ($kind:expr, $item:literal, $tag:literal, $name:ident, $doc:literal) => {
        #[doc = $doc]
        #[utoipa::path(patch, path = $item, tag = $tag, request_body = UpdateRequest,
            params(("id" = String, Path, description = "id or name"), ProjectQuery, ("If-Match" = Option<String>, Header, description = "expected generation")),
            responses((status = 200, body = crate::site::Resource), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
        pub async fn $name(
            State(app): State<AppState>,
            Auth(p): Auth,
            Path(id): Path<String>,
            ApiQuery(q): ApiQuery<ProjectQuery>,
            headers: HeaderMap,
            ApiJson(b): ApiJson<UpdateRequest>,
        ) -> Result<Response, ApiError> {
            update(&app, &p, $kind, id, &q, &headers, b).await
        }
    };
}

network_patch!(
    Kind::LoadBalancer,
    "/v1/load-balancers/{id}",
    "load-balancers",
    update_load_balancer,
    "Change a load balancer's backends, affinity or health check (RFC 7386 merge patch of the spec; `backends` is replaced as a whole). The VPC and listener are fixed."
);
network_patch!(
    Kind::Eip,
    "/v1/eips/{id}",
    "eips",
    update_eip,
    "Associate an elastic IP with a network interface (`{\"spec\": {\"network_interface\": \"a\"}}`), disassociate it (`null`) or change its `bandwidth_mbps`. 409 when the interface already has one."
);
network_patch!(
    Kind::SecurityGroup,
    "/v1/security-groups/{id}",
    "security-groups",
    update_security_group,
    "Change a security group's rules (RFC 7386 merge patch of the spec; `ingress` is replaced as a whole) or labels. Takes effect on the VPC router atomically."
);
