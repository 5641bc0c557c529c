//! The rollout controller as pure functions: which ring an agent is in, whether a ring's health
//! gates pass, and what transition follows from a state and the fleet's health.
//!
//! No I/O and no clock: the server feeds it database state and wall time; the simulator feeds it
//! a million virtual endpoints and virtual time. Both run exactly this code.
#![forbid(unsafe_code)]

mod gates;
mod membership;
mod spec;
mod state;

pub use gates::{
    GateResult, HealthSummary, Metrics, Window, evaluate_gates, finite, mean_and_trimmed,
    summarise, trim_count,
};
pub use membership::{ring_of, ring_position};
pub use spec::{GateSpec, RingSpec, RolloutSpec, SpecError};
pub use state::{
    AgentHealth, Phase, PromoteRefused, RolloutState, Target, Transition, promote_now, step,
    step_with_health, target_for,
};
