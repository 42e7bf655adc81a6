//! The crash-test hook of the write paths (objects, functions).

/// Crash-test hook: when `CLOUDLET_FAILPOINT` is `NAME=MS` for this `name`, sleep `MS`
/// milliseconds here (inside a write transaction), so a test can `kill -9` the daemon at that
/// exact point. Unset in production; read once.
pub(crate) fn failpoint(name: &str) {
    static SPEC: std::sync::OnceLock<Option<(String, u64)>> = std::sync::OnceLock::new();
    let spec = SPEC.get_or_init(|| {
        let v = std::env::var("CLOUDLET_FAILPOINT").ok()?;
        let (n, ms) = v.split_once('=')?;
        Some((n.to_string(), ms.parse().ok()?))
    });
    if let Some((n, ms)) = spec
        && n == name
    {
        tracing::warn!(failpoint = name, ms, "failpoint: pausing");
        std::thread::sleep(std::time::Duration::from_millis(*ms));
    }
}
