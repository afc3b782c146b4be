//! `flakesmith inject`: the same code as the `rk-inject` binary, for images built elsewhere.

/// Runs `flakesmith inject ARGS…`, where `args` are the words after `inject` exactly as typed
/// (`write --image …` or `verify --image …`). Prints its own report and errors, and returns the
/// exit code: 0 done, 1 refused / I/O error / problems found, 2 bad arguments or payload.
pub fn run(args: &[String]) -> i32 {
    crate::rockchip::cli::run("flakesmith inject", args)
}
