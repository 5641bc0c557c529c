//! Timing helpers shared by the benchmarks.
