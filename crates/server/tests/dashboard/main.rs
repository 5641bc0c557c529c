//! The dashboard: its API (a host's page, adoption per ring, gate history) in-process on every
//! store, and the page itself in a real browser (headless Chromium).
//!
//! The first browser test loads the page with `--dump-dom` and checks what a glance shows: a
//! rollout halted on its crash gate, a degraded host with its reason, a failing alert sink. The
//! second drives the page through WebDriver (Debian's `chromium-driver`, with fantoccini): it
//! filters the host list, opens a host's page, presses a button that the server refuses and sees
//! why, pauses a rollout after confirming and sees its new phase and the audit entry, loses a race with
//! another operator and is told so, and retries a stopped rollout. Screenshots go to
//! `target/test-artifacts/`; with `RINGFENCE_UPDATE_SCREENSHOTS=1` they are also copied to
//! `docs/` (the ones the README shows).
//!
//! `scripts/test.sh` installs Debian's chromium and chromium-driver; without them the browser
//! tests say so and skip (and fail the run under `RINGFENCE_REQUIRE_ALL=1`).

#[path = "../common/mod.rs"]
mod common;

mod api;
mod browser;
mod fleet;
mod pages;
