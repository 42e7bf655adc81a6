//! Per-function invocation metrics: counts by outcome, cold and warm starts, and a latency
//! histogram (time from the request reaching the gateway to the function's response head).
//!
//! One [`FunctionStats`] per function lives as long as the function (it survives redeploys and
//! rollbacks; a daemon restart starts it from zero, as Prometheus counters do). They reach
//! `/metrics` through [`FunctionCollector`] as
//! - `cloudlet_function_invocations_total{function,project,outcome}`,
//! - `cloudlet_function_starts_total{function,project,start="cold"|"warm"}`,
//! - `cloudlet_function_duration_seconds{function,project}` (histogram),
//!
//! and the console through [`FunctionStats::view`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use serde::Serialize;
use utoipa::ToSchema;

/// Upper bounds of the latency buckets, seconds (the last bucket is +Inf).
pub const BUCKETS: [f64; 14] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The function answered (whatever status it chose).
    Ok,
    /// It ran past its CPU budget (504).
    Timeout,
    /// It trapped, overran its memory or never answered (502).
    Failed,
    /// Refused: at its concurrency limit (503).
    Busy,
    /// Refused: body over its limit (413).
    TooLarge,
}

impl Outcome {
    const ALL: [Outcome; 5] = [Outcome::Ok, Outcome::Timeout, Outcome::Failed, Outcome::Busy, Outcome::TooLarge];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::Failed => "failed",
            Outcome::Busy => "busy",
            Outcome::TooLarge => "too_large",
        }
    }
}

/// Counters of one function.
#[derive(Debug)]
pub struct FunctionStats {
    name: String,
    project: String,
    outcomes: [AtomicU64; 5],
    cold: AtomicU64,
    warm: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

/// One latency bucket in [`StatsView`]: requests at most `le_ms` (`None`: beyond the last).
#[derive(Debug, Serialize, ToSchema)]
pub struct BucketView {
    /// Upper bound, milliseconds; absent for the overflow bucket.
    pub le_ms: Option<f64>,
    /// Requests in this bucket (not cumulative).
    pub count: u64,
}

/// The console's view of a function's metrics.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsView {
    /// Requests by outcome: `ok`, `timeout`, `failed`, `busy`, `too_large`.
    pub invocations: HashMap<String, u64>,
    /// Requests that failed or were refused (every outcome but `ok`).
    pub errors: u64,
    /// First requests of a loaded version.
    pub cold_starts: u64,
    /// Every other served request.
    pub warm_starts: u64,
    /// Latency histogram of served requests.
    pub latency: Vec<BucketView>,
    /// Mean latency, ms (0 without requests).
    pub mean_ms: f64,
    /// 50th and 99th percentile latency, ms: the upper bound of the bucket holding them.
    pub p50_ms: Option<f64>,
    /// See `p50_ms`.
    pub p99_ms: Option<f64>,
}

impl FunctionStats {
    fn new(name: &str, project: &str) -> Self {
        FunctionStats {
            name: name.into(),
            project: project.into(),
            outcomes: Default::default(),
            cold: AtomicU64::new(0),
            warm: AtomicU64::new(0),
            buckets: Default::default(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Count a refused request (`Busy`, `TooLarge`): it never ran.
    pub fn refused(&self, o: Outcome) {
        self.outcomes[o as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Count a request that ran: its outcome, start kind and latency.
    pub fn observe(&self, o: Outcome, cold: bool, elapsed: Duration) {
        self.outcomes[o as usize].fetch_add(1, Ordering::Relaxed);
        if cold { &self.cold } else { &self.warm }.fetch_add(1, Ordering::Relaxed);
        let s = elapsed.as_secs_f64();
        let i = BUCKETS.iter().position(|b| s <= *b).unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    fn counts(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect()
    }

    /// A snapshot for the console.
    pub fn view(&self) -> StatsView {
        let counts = self.counts();
        let total: u64 = counts.iter().sum();
        let quantile = |q: f64| {
            let want = (q * total as f64).ceil().max(1.0) as u64;
            let mut seen = 0;
            counts.iter().enumerate().find_map(|(i, c)| {
                seen += c;
                (seen >= want).then(|| BUCKETS.get(i).map(|b| b * 1000.0).unwrap_or(f64::INFINITY))
            })
        };
        let invocations: HashMap<String, u64> =
            Outcome::ALL.iter().map(|o| (o.as_str().to_string(), self.outcomes[*o as usize].load(Ordering::Relaxed))).collect();
        let errors = invocations.iter().filter(|(k, _)| *k != "ok").map(|(_, v)| v).sum();
        StatsView {
            invocations,
            errors,
            cold_starts: self.cold.load(Ordering::Relaxed),
            warm_starts: self.warm.load(Ordering::Relaxed),
            latency: counts.iter().enumerate().map(|(i, c)| BucketView { le_ms: BUCKETS.get(i).map(|b| b * 1000.0), count: *c }).collect(),
            mean_ms: if total == 0 { 0.0 } else { self.sum_micros.load(Ordering::Relaxed) as f64 / 1000.0 / total as f64 },
            p50_ms: if total == 0 { None } else { quantile(0.5).filter(|v| v.is_finite()) },
            p99_ms: if total == 0 { None } else { quantile(0.99).filter(|v| v.is_finite()) },
        }
    }
}

/// Every function's stats, by function id; shared by the gateway and the metrics registry.
#[derive(Debug, Default, Clone)]
pub struct FunctionCollector(Arc<RwLock<HashMap<String, Arc<FunctionStats>>>>);

impl FunctionCollector {
    /// The stats of function `id` (made on first use).
    pub fn stats(&self, id: &str, name: &str, project: &str) -> Arc<FunctionStats> {
        if let Some(s) = self.0.read().ok().and_then(|m| m.get(id).cloned()) {
            return s;
        }
        let mut m = match self.0.write() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry(id.to_string()).or_insert_with(|| Arc::new(FunctionStats::new(name, project))).clone()
    }

    /// The stats of function `id`, if it has served or refused anything since start.
    pub fn get(&self, id: &str) -> Option<Arc<FunctionStats>> {
        self.0.read().ok().and_then(|m| m.get(id).cloned())
    }

    /// Forget a deleted function.
    pub fn remove(&self, id: &str) {
        if let Ok(mut m) = self.0.write() {
            m.remove(id);
        }
    }

    fn snapshot(&self) -> Vec<Arc<FunctionStats>> {
        let mut v: Vec<_> = self.0.read().map(|m| m.values().cloned().collect()).unwrap_or_default();
        v.sort_by(|a, b| (&a.project, &a.name).cmp(&(&b.project, &b.name)));
        v
    }
}

type Labels = Vec<(String, String)>;

fn labels(s: &FunctionStats, extra: Option<(&str, &str)>) -> Labels {
    let mut l = vec![("function".to_string(), s.name.clone()), ("project".to_string(), s.project.clone())];
    if let Some((k, v)) = extra {
        l.push((k.to_string(), v.to_string()));
    }
    l
}

impl Collector for FunctionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let all = self.snapshot();
        if all.is_empty() {
            return Ok(());
        }
        let mut m = encoder.encode_descriptor("function_invocations", "Function requests by outcome", None, MetricType::Counter)?;
        for s in &all {
            for o in Outcome::ALL {
                let l = labels(s, Some(("outcome", o.as_str())));
                m.encode_family(&l)?.encode_counter::<Labels, u64, f64>(&s.outcomes[o as usize].load(Ordering::Relaxed), None)?;
            }
        }
        let mut m = encoder.encode_descriptor(
            "function_starts",
            "Function instance starts, cold (first request of a loaded version) or warm",
            None,
            MetricType::Counter,
        )?;
        for s in &all {
            for (kind, c) in [("cold", &s.cold), ("warm", &s.warm)] {
                let l = labels(s, Some(("start", kind)));
                m.encode_family(&l)?.encode_counter::<Labels, u64, f64>(&c.load(Ordering::Relaxed), None)?;
            }
        }
        let mut m = encoder.encode_descriptor("function_duration_seconds", "Function latency to the response head", None, MetricType::Histogram)?;
        for s in &all {
            let counts = s.counts();
            let buckets: Vec<(f64, u64)> = counts.iter().enumerate().map(|(i, c)| (BUCKETS.get(i).copied().unwrap_or(f64::MAX), *c)).collect();
            let l = labels(s, None);
            let sum = s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            m.encode_family(&l)?.encode_histogram::<Labels>(sum, counts.iter().sum(), &buckets, None)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_starts_and_quantiles() {
        let c = FunctionCollector::default();
        let s = c.stats("f1", "hello", "p1");
        s.observe(Outcome::Ok, true, Duration::from_micros(300));
        for _ in 0..98 {
            s.observe(Outcome::Ok, false, Duration::from_millis(2));
        }
        s.observe(Outcome::Timeout, false, Duration::from_secs(20));
        s.refused(Outcome::Busy);
        let v = s.view();
        assert_eq!((v.cold_starts, v.warm_starts, v.errors), (1, 99, 2));
        assert_eq!(v.invocations["ok"], 99);
        assert_eq!(v.p50_ms, Some(2.5));
        assert_eq!(v.p99_ms, Some(2.5));
        assert_eq!(v.latency.last().map(|b| (b.le_ms, b.count)), Some((None, 1)));

        let mut reg = prometheus_client::registry::Registry::with_prefix("cloudlet");
        reg.register_collector(Box::new(c.clone()));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &reg).expect("encode");
        assert!(out.contains(r#"cloudlet_function_invocations_total{function="hello",project="p1",outcome="ok"} 99"#), "{out}");
        assert!(out.contains(r#"cloudlet_function_starts_total{function="hello",project="p1",start="cold"} 1"#), "{out}");
        assert!(out.contains(r#"cloudlet_function_duration_seconds_bucket{le="+Inf",function="hello",project="p1"} 100"#), "{out}");
        c.remove("f1");
        assert!(c.get("f1").is_none());
    }
}
