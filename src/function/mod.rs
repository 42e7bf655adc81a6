//! The serverless function engine: WebAssembly components implementing
//! `wasi:http/proxy` (the ABI of `wasmtime serve` and Spin), run on `wasmtime`.
//!
//! - One [`wasmtime::Engine`] with the pooling allocator and epoch interruption; a ticker thread
//!   advances the epoch every [`EPOCH_TICK`], so a request's CPU budget is a number of ticks.
//! - Compiled artifacts are cached on disk by the SHA-256 of the component
//!   (`<cache>/<hex>.cwasm`, written to a temp name and renamed), so a restart does not recompile.
//! - An [`InstancePre`](wasmtime::component::InstancePre) (as `ProxyPre`) per function version; a
//!   new `Store` per request, with its own memory limit (scale to zero by construction).
//! - Guest stdout and stderr go, line by line, to a [`LogSink`] ([`pipe`]); outbound
//!   `wasi:http/outgoing-handler` requests are denied unless the function's allow-list names the
//!   host ([`Hooks`]), and then go only to addresses the site's egress policy permits, checked
//!   after DNS resolution ([`outbound`], `net::egress`).

mod outbound;
mod pipe;

pub use pipe::{LogSink, Stream};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::net::egress::EgressPolicy;

/// How often the epoch advances (the granularity of the CPU-time limit).
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Errors of the function engine.
#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    /// The bytes are not a component that exports `wasi:http/incoming-handler`.
    #[error("{0}")]
    Invalid(String),
    /// The request ran past its CPU-time budget.
    #[error("the function ran longer than {0:?}")]
    Timeout(Duration),
    /// The guest trapped, ran out of memory, or never answered.
    #[error("the function failed: {0}")]
    Failed(String),
    /// Engine set-up or cache I/O failed.
    #[error("function engine: {0}")]
    Engine(String),
}

/// Per-request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes of linear memory the instance may grow to.
    pub memory_bytes: usize,
    /// CPU time (wall time while running guest code) per request.
    pub timeout: Duration,
}

/// What one request runs with besides its limits.
#[derive(Clone)]
pub struct Invocation {
    /// Per-request limits.
    pub limits: Limits,
    /// The function's environment variables.
    pub env: Arc<[(String, String)]>,
    /// Hosts (`name` or `name:port`, lower case) outbound requests may go to; empty denies all.
    pub allowed_hosts: Arc<[String]>,
    /// Where the guest's stdout and stderr lines go.
    pub log: Arc<dyn LogSink>,
    /// The network namespace outbound connections are made from: the function's network
    /// interface's, so they leave through its VPC (its routes, NAT gateway and security groups);
    /// `None`: the host's.
    pub netns: Option<String>,
}

/// The outbound HTTP policy of one request: `send_request` is refused with
/// `HTTP-request-denied` unless the authority's host (or `host:port`) is on the allow-list, and
/// with `destination-IP-prohibited` when the host resolves only to addresses the site's egress
/// policy refuses (loopback, link-local, the host's own, management networks).
pub struct Hooks {
    allowed: Arc<[String]>,
    log: Arc<dyn LogSink>,
    egress: Arc<EgressPolicy>,
    netns: Option<String>,
}

impl Hooks {
    /// Whether `authority` (`host[:port]`) may be contacted.
    pub fn allows(&self, authority: &str) -> bool {
        let a = authority.to_ascii_lowercase();
        let host = a.rsplit_once(':').filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit())).map(|(h, _)| h).unwrap_or(&a);
        self.allowed.iter().any(|x| *x == a || *x == host)
    }
}

pub(crate) type OutgoingFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;
type SendFuture = Box<dyn Future<Output = Result<(hyper::Response<wasmtime_wasi_http::WasiBody>, OutgoingFuture), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: hyper::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: OutgoingFuture,
    ) -> SendFuture {
        let authority = request.uri().authority().map(|a| a.to_string()).unwrap_or_default();
        if !self.allows(&authority) {
            self.log.line(Stream::Host, &format!("outbound request to {authority:?} denied: not on the function's allow-list"));
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        drop(fut);
        Box::new(outbound::send(self.egress.clone(), self.log.clone(), self.netns.clone(), request, options))
    }
}

/// Store data of one request.
struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: Hooks,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

/// A function version ready to serve: its pre-instantiated component.
#[derive(Clone)]
pub struct Loaded {
    pre: ProxyPre<Host>,
    /// The compiled artifact came from the disk cache (no compilation happened).
    pub from_cache: bool,
    served: Arc<AtomicBool>,
}

impl Loaded {
    /// True exactly once: for the first request this loaded version serves (a cold start, which
    /// also faults in the artifact's pages); every later request is warm.
    pub fn take_cold(&self) -> bool {
        !self.served.swap(true, Ordering::Relaxed)
    }
}

/// The engine shared by every function.
pub struct FunctionEngine {
    engine: Engine,
    linker: Arc<Linker<Host>>,
    cache: PathBuf,
    egress: Arc<EgressPolicy>,
}

fn eng(e: impl std::fmt::Display) -> FunctionError {
    FunctionError::Engine(e.to_string())
}

impl FunctionEngine {
    /// An engine whose pool holds up to `instances` concurrent instances, each of at most
    /// `max_memory` bytes, caching artifacts in `cache`. Outbound requests follow the site's
    /// egress policy as installed at this point (`net::egress::site_policy`).
    pub fn new(cache: &Path, instances: u32, max_memory: usize) -> Result<Self, FunctionError> {
        std::fs::create_dir_all(cache).map_err(eng)?;
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 4)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .max_memory_size(max_memory);
        let mut cfg = Config::new();
        cfg.wasm_component_model(true).epoch_interruption(true).allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&cfg).map_err(eng)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(eng)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(eng)?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("fn-epoch".into())
            .spawn(move || {
                while let Some(e) = weak.upgrade() {
                    e.increment_epoch();
                    drop(e);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .map_err(eng)?;
        Ok(FunctionEngine { engine, linker: Arc::new(linker), cache: cache.to_path_buf(), egress: crate::net::egress::site_policy() })
    }

    /// The same engine with `policy` as its egress policy.
    pub fn with_egress(mut self, policy: EgressPolicy) -> Self {
        self.egress = Arc::new(policy);
        self
    }

    /// Compile (or load from the cache) and pre-instantiate a component. Errors: `Invalid` with
    /// the reason when the bytes are not a component or do not export `wasi:http`.
    pub fn load(&self, wasm: &[u8]) -> Result<Loaded, FunctionError> {
        if wasm.get(..8) != Some(&[0, b'a', b's', b'm', 0x0d, 0x00, 0x01, 0x00]) {
            return Err(FunctionError::Invalid("not a WebAssembly component (a core module or other bytes): build for wasm32-wasip2".into()));
        }
        let path = self.cache.join(format!("{}.cwasm", hex::encode(Sha256::digest(wasm))));
        let (component, from_cache) = match std::fs::metadata(&path) {
            // SAFETY: the file is an artifact this engine serialized into its own cache
            // directory (mode of the data dir: root only); deserializing trusts its contents.
            Ok(_) => match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => (c, true),
                Err(_) => (self.compile(wasm, &path)?, false),
            },
            Err(_) => (self.compile(wasm, &path)?, false),
        };
        let pre = self.linker.instantiate_pre(&component).map_err(|e| FunctionError::Invalid(format!("the component's imports cannot be satisfied: {e:#}")))?;
        let pre = ProxyPre::new(pre).map_err(|e| FunctionError::Invalid(format!("the component does not export wasi:http/incoming-handler: {e:#}")))?;
        Ok(Loaded { pre, from_cache, served: Arc::default() })
    }

    fn compile(&self, wasm: &[u8], path: &Path) -> Result<Component, FunctionError> {
        let c = Component::new(&self.engine, wasm).map_err(|e| FunctionError::Invalid(format!("the component does not validate: {e:#}")))?;
        let bytes = c.serialize().map_err(eng)?;
        let tmp = path.with_extension(format!("tmp-{}", ulid::Ulid::new()));
        std::fs::write(&tmp, &bytes).and_then(|_| std::fs::rename(&tmp, path)).map_err(eng)?;
        Ok(c)
    }

    /// Serve one request with a fresh instance of `f` under `inv` (limits, environment,
    /// outbound allow-list, log sink). Errors: `Timeout` past the CPU budget, `Failed` for a trap,
    /// a memory overrun, an error answer or no answer.
    pub async fn invoke<B>(&self, f: &Loaded, req: hyper::Request<B>, inv: &Invocation) -> Result<hyper::Response<HyperOutgoingBody>, FunctionError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let limits = inv.limits;
        let mut wasi = WasiCtx::builder();
        wasi.envs(&inv.env);
        wasi.stdout(pipe::LogPipe::new(inv.log.clone(), Stream::Stdout));
        wasi.stderr(pipe::LogPipe::new(inv.log.clone(), Stream::Stderr));
        let hooks = Hooks { allowed: inv.allowed_hosts.clone(), log: inv.log.clone(), egress: self.egress.clone(), netns: inv.netns.clone() };
        let host = Host {
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            hooks,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new().memory_size(limits.memory_bytes).instances(16).build(),
        };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limits);
        // Every tick the guest yields to the runtime (a spinning guest must not hold a worker
        // thread that other requests' tasks wait on); after the budget's ticks it is interrupted.
        let ticks = (limits.timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        let mut used = 0u64;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            used += 1;
            if used >= ticks {
                return Err(wasmtime::Trap::Interrupt.into());
            }
            Ok(wasmtime::UpdateDeadline::Yield(1))
        });
        let (tx, rx) = tokio::sync::oneshot::channel();
        let req = store.data_mut().http().new_incoming_request(Scheme::Http, req).map_err(|e| FunctionError::Failed(format!("{e:#}")))?;
        let out = store.data_mut().http().new_response_outparam(tx).map_err(eng)?;
        let pre = f.pre.clone();
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            proxy.wasi_http_incoming_handler().call_handle(&mut store, req, out).await
        });
        match rx.await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(code)) => Err(FunctionError::Failed(format!("the function answered an error: {code:?}"))),
            Err(_) => match task.await {
                Ok(Ok(())) => Err(FunctionError::Failed("the function returned without answering".into())),
                Ok(Err(e)) if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) => Err(FunctionError::Timeout(limits.timeout)),
                Ok(Err(e)) => Err(FunctionError::Failed(format!("{e:#}"))),
                Err(e) => Err(FunctionError::Failed(e.to_string())),
            },
        }
    }
}

#[cfg(test)]
mod tests;
