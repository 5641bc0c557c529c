//! The host agent: sensors in, engine verdicts out, every permission event answered on time.
