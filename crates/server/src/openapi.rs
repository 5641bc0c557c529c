//! The OpenAPI 3.1 description served at `/openapi.json`, built from one table of routes so the
//! document and the router are reviewed side by side (a test checks they agree).

use serde_json::{Value, json};

/// (method, path, summary, who may call it).
pub const ROUTES: &[(&str, &str, &str, &str)] = &[
    (
        "get",
        "/livez",
        "Liveness: the process serves HTTP",
        "anyone",
    ),
    (
        "get",
        "/healthz",
        "Readiness: database health and leadership",
        "anyone",
    ),
    ("get", "/metrics", "Prometheus metrics", "anyone"),
    ("get", "/openapi.json", "This document", "anyone"),
    (
        "get",
        "/api/v1/tls/ca.pem",
        "The server's private CA (PEM), for clients that pinned its fingerprint; 404 with an operator's certificate",
        "anyone",
    ),
    (
        "post",
        "/api/v1/enroll",
        "Trade a single-use enrollment token for an agent credential; with `csr` (a PEM certificate signing request for a key the agent keeps) a server with its own CA also returns `client_cert`, the agent's client certificate for mutual TLS",
        "anyone with an enrollment token",
    ),
    (
        "post",
        "/api/v1/enroll-tokens",
        "Create enrollment tokens",
        "operator",
    ),
    (
        "get",
        "/api/v1/agents",
        "List agents with their last heartbeat",
        "operator",
    ),
    (
        "post",
        "/api/v1/agents/heartbeat",
        "Report health; receive release assignments",
        "agent",
    ),
    (
        "post",
        "/api/v1/agents/reports",
        "Upload spooled alerts, failures and crash reports (idempotent by id)",
        "agent",
    ),
    (
        "post",
        "/api/v1/agents/certificate",
        "Renew the agent's client certificate: `csr` (PEM) for a new key in, `client_cert` out; only over a connection presenting the agent's current certificate (401 without it); 404 on a server without a CA of its own",
        "agent",
    ),
    (
        "get",
        "/api/v1/hosts",
        "Hosts, degraded first: release=channel@version, state=online|offline|installing|lkg, degraded=true|false, seen_within_s, unseen_for_s, name, limit",
        "operator",
    ),
    (
        "get",
        "/api/v1/hosts/{id}",
        "One host for the dashboard: slots as reported, last heartbeat's figures, guard restores, recent failures, the crash groups it is in",
        "operator",
    ),
    (
        "get",
        "/api/v1/blobs/{sha256}",
        "Download a content-addressed release bundle",
        "agent or operator",
    ),
    (
        "post",
        "/api/v1/releases",
        "Publish a signed bundle (body); preflight runs unless skip_preflight=true",
        "operator",
    ),
    (
        "get",
        "/api/v1/releases",
        "List releases with preflight verdicts",
        "operator",
    ),
    (
        "get",
        "/api/v1/releases/{channel}/{version}",
        "One release with its preflight evidence",
        "operator",
    ),
    (
        "post",
        "/api/v1/rollouts",
        "Start a rollout through rings",
        "operator",
    ),
    (
        "get",
        "/api/v1/rollouts",
        "List rollouts with ring progress (hosts in each ring and on the release) and gates",
        "operator",
    ),
    (
        "get",
        "/api/v1/rollouts/{id}",
        "One rollout: rings with adoption, gate values against thresholds and over time (gate_history), history",
        "operator",
    ),
    (
        "get",
        "/api/v1/rollouts/{id}/gates",
        "Gate values over the rollout (a bounded history the controller keeps), one series per gate with its unit",
        "operator",
    ),
    (
        "post",
        "/api/v1/rollouts/{id}/{action}",
        "pause, resume, halt, rollback, or promote (ends the current ring's bake now; 409 naming each failing gate)",
        "operator",
    ),
    (
        "post",
        "/api/v1/rollouts/{id}/retry",
        "A new rollout of a halted or rolled-back rollout's channel, version and spec; 409 for one running or completed",
        "operator",
    ),
    (
        "post",
        "/api/v1/rollouts/{id}/enforce",
        "Enforce a completed audit rollout's release: a new enforce rollout of it through the same rings; 409 while it runs, for an enforcing rollout, or once the channel moved on",
        "operator",
    ),
    (
        "post",
        "/api/v1/remediations",
        "Write a remediation plan (pin a version or disable an engine) for the fleet, a tag or an agent",
        "operator",
    ),
    (
        "get",
        "/api/v1/remediations",
        "Active remediation plans",
        "operator",
    ),
    (
        "post",
        "/api/v1/remediations/{id}/retire",
        "Retire a plan; rollouts decide again",
        "operator",
    ),
    ("get", "/api/v1/status", "Fleet summary", "operator"),
    (
        "get",
        "/api/v1/audit",
        "Audit log, newest first",
        "operator",
    ),
    (
        "get",
        "/api/v1/reports",
        "Reports of one kind (`kind`: alert, failure, crash, install, restore, remediation, minidump or telemetry; 400 for another) since `since_ms`",
        "operator",
    ),
    (
        "get",
        "/api/v1/crash-groups",
        "Failure and crash reports grouped by signature, in plain words",
        "operator",
    ),
    (
        "get",
        "/api/v1/alerts",
        "Alerts newest first; filters `since_ms`, `host` (agent id or hostname), `rule` (part of the rule id), `severity` (OCSF name or id), `limit` (100, at most 10000)",
        "operator",
    ),
    (
        "get",
        "/api/v1/sinks",
        "Each alert sink: kind, target, cursor, outbox depth and lag, sent, failed and dropped counts, last error, last success",
        "operator",
    ),
    (
        "get",
        "/",
        "The dashboard",
        "anyone (the page asks for an operator token)",
    ),
];

pub fn document() -> Value {
    let mut paths = serde_json::Map::new();
    for (method, path, summary, who) in ROUTES {
        let security = if *who == "anyone" {
            json!([])
        } else {
            json!([{ "bearer": [] }])
        };
        let entry = paths.entry((*path).to_owned()).or_insert_with(|| json!({}));
        let description = if who.starts_with("agent") {
            format!(
                "Caller: {who}. An agent's client certificate, when it presents one (always, on a server started with --require-agent-certs or for an agent that was issued one), must name the agent its credential belongs to."
            )
        } else {
            format!("Caller: {who}.")
        };
        entry[*method] = json!({
            "summary": summary,
            "description": description,
            "security": security,
            "responses": {
                "200": { "description": "OK" },
                "400": { "description": "Malformed request", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                "401": { "description": "Missing or invalid credential" },
                "403": { "description": "Wrong kind of credential" },
                "503": { "description": "Database unavailable" }
            }
        });
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "ringfence control plane", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": { "Error": { "type": "object", "properties": { "error": { "type": "string" } }, "required": ["error"] } }
        }
    })
}
