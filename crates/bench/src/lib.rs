//! Benchmarks behind `ringfence bench`. Each one measures a baseline and the thing itself in the
//! same run and prints the ratio, so results stay comparable across machines.
//!
//! Benchmarks live in the product (not only under `cargo bench`) so that an operator can
//! measure ringfence on their own hardware with the binary they deploy.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod engine;
pub mod engine_cache;
pub mod exec;
mod fapolicyd;
pub mod fleet_faults;
pub mod guard;
pub mod hotswap;
pub mod http_load;
pub mod memory;
pub mod server;
pub mod sigma;
pub mod stand_in;
pub mod stats;
pub mod upgrade;

/// A duration flag (`8s`, `500ms`: the syntax every ringfence flag uses) as seconds.
fn seconds(text: &str) -> Result<f64, ringfence_protocol::duration::DurationError> {
    ringfence_protocol::duration::parse(text).map(|span| span.as_secs_f64())
}

/// A program in one of `PATH`'s directories or in `extra`, if there is one.
fn program(name: &str, extra: &[&str]) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(std::path::PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
