//! The REST API (`/v1`): axum routers, request and response types, OpenAPI, auth and errors.
//!
//! Handlers are thin: parse, authorize, call the site service, map the result. Every route is
//! registered through `utoipa-axum`, so the OpenAPI document covers every route by construction.

pub mod auth;
pub mod buckets;
pub mod console;
pub mod containers;
pub mod error;
pub mod events;
pub mod functions;
pub mod gateway;
pub mod instances;
pub mod kinds;
pub mod listener;
pub mod network;
pub mod resources;
pub mod s3;
pub mod system;
pub mod volumes;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use tokio::sync::watch;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::site::Site;

/// State shared by handlers.
#[derive(Clone)]
pub struct AppState {
    /// The site service.
    pub site: Site,
    /// Turns true at shutdown; long-lived streams end on it.
    pub shutdown: watch::Receiver<bool>,
    /// The OpenAPI document as JSON, made on first request (not at start: it is large).
    pub openapi: Arc<std::sync::LazyLock<String>>,
}

#[derive(OpenApi)]
#[openapi(
    info(title = "cloudlet", description = "The site API of cloudlet, an edge cloud in one binary. Conventions: docs/api.md."),
    components(schemas(error::ErrorBody, error::ErrorDetail, crate::site::model::Condition, crate::site::nodes::ProbeReport,
        crate::site::projects::ProjectSpec, crate::site::nodes::NodeSpec, crate::site::operations::OperationSpec,
        crate::site::auth::Role, crate::site::net_model::VpcSpec, crate::site::net_model::SubnetSpec,
        crate::site::net_model::SecurityGroupSpec, crate::site::net_model::SgRule, crate::site::net_model::NetworkInterfaceSpec,
        crate::site::net_model::Protocol, crate::site::net_model::EipSpec, crate::site::net_model::NatGatewaySpec,
        crate::site::net_model::PortForwardSpec, crate::site::net_model::LoadBalancerSpec, crate::site::net_model::Listener,
        crate::site::net_model::BackendSpec, crate::site::net_model::Affinity, crate::site::net_model::HealthCheck,
        crate::site::images::ImageSpec, crate::site::images::Credentials, crate::site::images::ImageRunConfig,
        crate::site::containers::ContainerSpec, crate::site::containers::ContainerResources, crate::site::containers::ContainerMount,
        crate::site::workload::RestartPolicy, crate::site::workload::DesiredState,
        crate::site::instances::InstanceSpec, crate::site::instances::InstanceVolume, crate::site::instance_images::VmManifest,
        crate::site::net_model::Attachment,
        crate::site::volumes::VolumeSpec, crate::site::volumes::SnapshotSpec,
        crate::site::buckets::BucketSpec, crate::site::buckets::BucketPolicy, crate::site::buckets::AccessKeySpec)),
    modifiers(&Security),
    tags((name = "projects"), (name = "tokens"), (name = "users"), (name = "nodes"), (name = "operations"),
        (name = "vpcs"), (name = "subnets"), (name = "security-groups"), (name = "network-interfaces"), (name = "eips"), (name = "nat-gateways"),
        (name = "port-forwards"), (name = "load-balancers"), (name = "images"), (name = "containers"), (name = "instances"), (name = "volumes"), (name = "snapshots"), (name = "buckets"), (name = "access-keys"), (name = "functions"),
        (name = "events"), (name = "audit"), (name = "auth"), (name = "system"))
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let comps = api.components.get_or_insert_with(Default::default);
        comps.add_security_scheme("bearer", SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()));
        comps.add_security_scheme("session", SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new("cloudlet_session"))));
        api.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new()), SecurityRequirement::new("session", Vec::<String>::new())]);
    }
}

/// Every documented route, and the OpenAPI document describing them.
pub fn api_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::metrics))
        .routes(routes!(system::openapi))
        .routes(routes!(system::site_info))
        .routes(routes!(system::join_portal))
        .routes(routes!(system::portal_identity))
        .routes(routes!(system::login))
        .routes(routes!(system::logout))
        .routes(routes!(system::whoami))
        .routes(routes!(resources::list_projects, resources::create_project))
        .routes(routes!(resources::get_project, resources::update_project, resources::delete_project))
        .routes(routes!(resources::list_tokens, resources::create_token))
        .routes(routes!(resources::get_token, resources::delete_token))
        .routes(routes!(resources::list_users, resources::create_user))
        .routes(routes!(resources::get_user, resources::delete_user))
        .routes(routes!(resources::list_nodes))
        .routes(routes!(resources::get_node, resources::update_node))
        .routes(routes!(resources::list_operations))
        .routes(routes!(resources::get_operation))
        .routes(routes!(network::list_vpcs, network::create_vpc))
        .routes(routes!(network::get_vpc, network::delete_vpc))
        .routes(routes!(network::list_subnets, network::create_subnet))
        .routes(routes!(network::get_subnet, network::delete_subnet))
        .routes(routes!(network::list_security_groups, network::create_security_group))
        .routes(routes!(network::get_security_group, network::update_security_group, network::delete_security_group))
        .routes(routes!(network::list_network_interfaces, network::create_network_interface))
        .routes(routes!(network::get_network_interface, network::delete_network_interface))
        .routes(routes!(network::list_eips, network::create_eip))
        .routes(routes!(network::get_eip, network::update_eip, network::delete_eip))
        .routes(routes!(network::list_nat_gateways, network::create_nat_gateway))
        .routes(routes!(network::get_nat_gateway, network::delete_nat_gateway))
        .routes(routes!(network::list_port_forwards, network::create_port_forward))
        .routes(routes!(network::get_port_forward, network::delete_port_forward))
        .routes(routes!(network::list_load_balancers, network::create_load_balancer))
        .routes(routes!(network::get_load_balancer, network::update_load_balancer, network::delete_load_balancer))
        .routes(routes!(containers::list_images, containers::pull_image))
        .routes(routes!(containers::get_image, containers::delete_image))
        .routes(routes!(containers::list_containers, containers::create_container))
        .routes(routes!(containers::get_container, containers::update_container, containers::delete_container))
        .routes(routes!(containers::start_container))
        .routes(routes!(containers::stop_container))
        .routes(routes!(containers::restart_container))
        .routes(routes!(containers::container_logs))
        .routes(routes!(containers::exec_container))
        .routes(routes!(instances::list_instances, instances::create_instance))
        .routes(routes!(instances::get_instance, instances::update_instance, instances::delete_instance))
        .routes(routes!(instances::start_instance))
        .routes(routes!(instances::stop_instance))
        .routes(routes!(instances::reboot_instance))
        .routes(routes!(instances::instance_console))
        .routes(routes!(instances::instance_console_ws))
        .routes(routes!(volumes::list_volumes, volumes::create_volume))
        .routes(routes!(volumes::get_volume, volumes::update_volume, volumes::delete_volume))
        .routes(routes!(volumes::check_volume))
        .routes(routes!(volumes::list_snapshots, volumes::create_snapshot))
        .routes(routes!(volumes::get_snapshot, volumes::delete_snapshot))
        .routes(routes!(buckets::list_buckets, buckets::create_bucket))
        .routes(routes!(buckets::get_bucket, buckets::update_bucket, buckets::delete_bucket))
        .routes(routes!(buckets::list_objects))
        .routes(routes!(buckets::get_object, buckets::delete_object))
        .routes(routes!(buckets::list_access_keys, buckets::create_access_key))
        .routes(routes!(buckets::get_access_key, buckets::delete_access_key))
        .routes(routes!(buckets::check_object_store))
        .routes(routes!(functions::list_functions))
        .routes(routes!(functions::get_function, functions::update_function, functions::delete_function))
        .routes(routes!(functions::function_logs))
        .routes(routes!(functions::function_metrics))
        .routes(routes!(functions::invoke_function))
        .routes(routes!(events::events))
        .routes(routes!(events::audit))
        .routes(routes!(events::outbox))
        .split_for_parts()
}

/// Routes that take large bodies (image uploads): outside the API's body limit, each with its
/// own.
fn upload_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::new()
        .routes(routes!(containers::import_image))
        .routes(routes!(instances::import_vm_image))
        .routes(routes!(buckets::put_object))
        .routes(routes!(functions::deploy_function))
        .split_for_parts()
}

/// The OpenAPI document of every route.
fn full_doc() -> utoipa::openapi::OpenApi {
    let mut doc = api_routes().1;
    doc.merge(upload_routes().1);
    doc
}

/// The OpenAPI document as JSON.
pub fn openapi_json() -> String {
    full_doc().to_pretty_json().unwrap_or_else(|_| "{}".into())
}

/// The full HTTP application: API, console, and the middleware stack (panic guard, JSON errors,
/// body limit, metrics, audit).
pub fn app(site: Site, shutdown: watch::Receiver<bool>) -> Router {
    let (routes, _) = api_routes();
    let (uploads, _) = upload_routes();
    let openapi = Arc::new(std::sync::LazyLock::new(openapi_json as fn() -> String));
    let max_body = site.config().api.max_body_bytes;
    let state = AppState { site, shutdown, openapi };
    routes
        .fallback(console::serve)
        .layer(DefaultBodyLimit::max(max_body))
        // Refuse an oversized Content-Length before reading the body (no 100-continue).
        .layer(RequestBodyLimitLayer::new(max_body))
        .merge(uploads.layer(DefaultBodyLimit::disable()))
        .layer(middleware::from_fn_with_state(state.clone(), auth::audit))
        .layer(middleware::from_fn_with_state(state.clone(), auth::metrics))
        .layer(middleware::map_response(error::jsonify_errors))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .with_state(state)
}
