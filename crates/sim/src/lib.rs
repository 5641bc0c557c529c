//! The fleet simulator behind `ringfence sim`: a million virtual endpoints in virtual time, driven
//! by the real rollout controller (`ringfence_rollout`), to compare rollout strategies under a
//! configurable fault model.
//!
//! Every run is deterministic given the seed: per-agent randomness is a hash of the seed, the
//! agent's index and what is being drawn, so no random-number state is stored per agent.
//! See `docs/sim.md` for the model and its assumptions.

#![forbid(unsafe_code)]

mod draw;
mod engine;
mod fleet;
mod model;
mod report;
mod strategy;
mod svg;
mod table;

pub use engine::{run_strategy, simulate};
pub use model::{FaultKind, FaultModel, SimConfig};
pub use report::{Outcome, SimReport, StrategyResult};
pub use strategy::Strategy;
pub use svg::render_svg;
pub use table::render_table;

/// Why a simulation cannot start: every case is bad input from the command line.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimError {
    /// A strategy is `NAME=PERCENT,PERCENT,...,100`.
    #[error("strategy {text:?}: {reason}")]
    Strategy { text: String, reason: String },
    /// A fault-model value is out of range.
    #[error("{0}")]
    Model(String),
}

#[cfg(test)]
mod tests;
