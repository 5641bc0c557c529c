//! Benchmarks behind `ringfence bench`. Each one measures a baseline and the thing itself in the
//! same run and prints the ratio, so results stay comparable across machines.
//!
//! Benchmarks live in the product (not only under `cargo bench`) so that an operator can
//! measure ringfence on their own hardware with the binary they deploy.

pub mod engine;
pub mod engine_cache;
pub mod exec;
pub mod fleet_faults;
pub mod hotswap;
pub mod http_load;
pub mod server;
pub mod sigma;
pub mod stats;
pub mod upgrade;
