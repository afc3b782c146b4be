//! Crash and failure injection for tests of all-or-nothing writes.
//!
//! `FLAKESMITH_FAILPOINT=<name>` makes the point called `<name>` return an error, as a full disk
//! would; `FLAKESMITH_FAILPOINT=<name>:abort` aborts the process there, as a crash or power loss
//! would. `<name>` may end in `#N` to fire on the Nth time the point is reached.
//!
//! Only builds with the `failpoints` feature have them (`cargo test` turns it on through the
//! crate's dev-dependency on itself); in every other build a point is an empty inline function, so
//! an installed flakesmith neither reads the variable nor carries the points' names.

/// Fails or aborts here when `FLAKESMITH_FAILPOINT` names this point.
#[cfg(feature = "failpoints")]
pub(crate) fn hit(name: &str) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static HITS: AtomicUsize = AtomicUsize::new(0);

    let Ok(spec) = std::env::var("FLAKESMITH_FAILPOINT") else {
        return Ok(());
    };
    let (point, abort) = match spec.strip_suffix(":abort") {
        Some(p) => (p, true),
        None => (spec.as_str(), false),
    };
    let (point, nth) = match point.split_once('#') {
        Some((p, n)) => (p, n.parse().unwrap_or(1)),
        None => (point, 1),
    };
    if point != name || HITS.fetch_add(1, Ordering::SeqCst) + 1 != nth {
        return Ok(());
    }
    if abort {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
    Err(std::io::Error::other(format!("failpoint {name}")))
}

/// Without the `failpoints` feature a point does nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn hit(_name: &str) -> std::io::Result<()> {
    Ok(())
}
