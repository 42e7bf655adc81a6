//! Prometheus metrics (`prometheus-client`, OpenMetrics text format).
//!
//! - `cloudlet_http_requests_total{route,method,status}`: requests per matched route;
//! - `cloudlet_http_request_duration_seconds{route,method}`: latency histogram;
//! - `cloudlet_resources{kind}`: stored resources per kind (refreshed at each scrape);
//! - `cloudlet_reconcile_total{kind}` and `cloudlet_reconcile_errors_total{kind}`;
//! - `cloudlet_reconcile_duration_seconds{kind}`: reconcile pass latency;
//! - `cloudlet_function_*`: per-function invocations, starts and latency
//!   ([`super::function_metrics`]).

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::Kind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs .. ~1.6 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

/// The daemon's metric families.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: HistogramFamily<RouteLabels>,
    resources: Family<KindLabels, Gauge>,
    reconcile_total: Family<KindLabels, Counter>,
    reconcile_errors: Family<KindLabels, Counter>,
    reconcile_latency: HistogramFamily<KindLabels>,
    /// Per-function invocation metrics (also in the registry, as a collector).
    pub functions: super::function_metrics::FunctionCollector,
    encode_lock: Mutex<()>,
    /// Audit records of unauthenticated requests not written (over the per-minute allowance).
    audit_anonymous_dropped: Counter,
    /// The current minute's start and the anonymous records written in it.
    anonymous_window: Mutex<(std::time::Instant, u32)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Register every family in a fresh registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cloudlet");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let http_latency: HistogramFamily<RouteLabels> = Family::new_with_constructor(latency_histogram);
        let resources = Family::<KindLabels, Gauge>::default();
        let reconcile_total = Family::<KindLabels, Counter>::default();
        let reconcile_errors = Family::<KindLabels, Counter>::default();
        let reconcile_latency: HistogramFamily<KindLabels> = Family::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests by matched route", http_requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency", http_latency.clone());
        registry.register("resources", "Stored resources per kind", resources.clone());
        registry.register("reconcile", "Reconcile passes per kind", reconcile_total.clone());
        registry.register("reconcile_errors", "Failed reconcile passes per kind", reconcile_errors.clone());
        registry.register("reconcile_duration_seconds", "Reconcile pass latency", reconcile_latency.clone());
        let functions = super::function_metrics::FunctionCollector::default();
        registry.register_collector(Box::new(functions.clone()));
        let audit_anonymous_dropped = Counter::default();
        registry.register("audit_anonymous_dropped", "Audit records of unauthenticated requests not written (rate limit)", audit_anonymous_dropped.clone());
        Metrics {
            registry,
            http_requests,
            http_latency,
            resources,
            reconcile_total,
            reconcile_errors,
            reconcile_latency,
            functions,
            encode_lock: Mutex::new(()),
            audit_anonymous_dropped,
            anonymous_window: Mutex::new((std::time::Instant::now(), 0)),
        }
    }

    /// Whether an audit record of an unauthenticated request may be written now: at most
    /// `per_minute` in each minute, site-wide; a refused one is counted instead.
    pub fn admit_anonymous_audit(&self, per_minute: u32) -> bool {
        let mut w = self.anonymous_window.lock().unwrap_or_else(|p| p.into_inner());
        if w.0.elapsed() >= Duration::from_secs(60) {
            *w = (std::time::Instant::now(), 0);
        }
        if w.1 < per_minute {
            w.1 += 1;
            return true;
        }
        drop(w);
        self.audit_anonymous_dropped.inc();
        false
    }

    /// Count one HTTP request on `route` (the route template, never the raw path).
    pub fn observe_http(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http_requests.get_or_create(&HttpLabels { route: route.into(), method: method.into(), status }).inc();
        self.http_latency.get_or_create(&RouteLabels { route: route.into(), method: method.into() }).observe(elapsed.as_secs_f64());
    }

    /// Count one reconcile pass.
    pub fn observe_reconcile(&self, kind: Kind, ok: bool, elapsed: Duration) {
        let l = KindLabels { kind: kind.as_str().into() };
        self.reconcile_total.get_or_create(&l).inc();
        if !ok {
            self.reconcile_errors.get_or_create(&l).inc();
        }
        self.reconcile_latency.get_or_create(&l).observe(elapsed.as_secs_f64());
    }

    /// Failed reconcile passes of a kind so far.
    pub fn reconcile_errors(&self, kind: Kind) -> u64 {
        self.reconcile_errors.get_or_create(&KindLabels { kind: kind.as_str().into() }).get()
    }

    /// Encode in the OpenMetrics text format, after setting the resource gauges to `counts`
    /// (singular kind name → count).
    pub fn encode(&self, counts: &[(String, i64)]) -> String {
        let _g = self.encode_lock.lock();
        for k in Kind::ALL {
            let n = counts.iter().find(|(name, _)| name == k.as_str()).map(|(_, n)| *n).unwrap_or(0);
            self.resources.get_or_create(&KindLabels { kind: k.as_str().into() }).set(n);
        }
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.push_str("# encoding failed\n");
        }
        out
    }
}
