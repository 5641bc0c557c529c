//! Sigma rule parsing, compilation and matching.
