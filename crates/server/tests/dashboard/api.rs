//! The dashboard's API in-process, on every store: a host's page, the filtered host list,
//! adoption per ring and the gate history.

use crate::common;
use crate::fleet::fleet;
use axum::http::StatusCode;
use ringfence_server::controller;
use serde_json::{Value, json};

#[tokio::test]
async fn a_hosts_page_shows_its_slots_figures_restores_failures_and_crash_groups() {
    for h in common::harnesses().await {
        let fleet = fleet(&h).await;
        let path = format!("/api/v1/hosts/{}", fleet.canary_id);
        let (status, _) = h.get(&path, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{}", h.name);
        let (status, host) = h.get(&path, Some(&h.operator)).await;
        assert_eq!(status, StatusCode::OK, "{}: {host}", h.name);
        assert_eq!(host["host"]["hostname"], "canary-1");
        assert_eq!(host["tags"], json!(["canary"]));
        assert_eq!(
            host["slots"],
            json!([{"channel": "detection", "current": "2.0.0", "lkg": "1.0.0", "running": "lkg"}])
        );
        assert_eq!(host["health"]["rss_bytes"], 27_262_976u64);
        assert_eq!(host["health"]["latency"]["p99_us"], 1500.0);
        assert_eq!(host["restores"].as_array().map(Vec::len), Some(1));
        assert_eq!(host["restores"][0]["body"]["channel"], "detection");
        let failures = host["failures"].as_array().expect("failures");
        assert_eq!(failures.len(), 1, "{}", h.name);
        assert_eq!(failures[0]["kind"], "failure");
        let groups = host["crash_groups"].as_array().expect("groups");
        assert_eq!(groups.len(), 1, "{}: {host}", h.name);
        assert!(
            groups[0]["summary"]
                .as_str()
                .is_some_and(|s| s.contains("parse_template")),
            "{host}"
        );
        // A host with no failures is in no group, and an unknown id is a 404 in words.
        let web = h.state.store.agents().await.expect("agents");
        let web_1 = web.iter().find(|a| a.hostname == "web-1").expect("web-1");
        let (_, quiet) = h
            .get(&format!("/api/v1/hosts/{}", web_1.id), Some(&h.operator))
            .await;
        assert_eq!(quiet["crash_groups"], json!([]));
        assert_eq!(quiet["restores"], json!([]));
        let (status, missing) = h.get("/api/v1/hosts/nobody", Some(&h.operator)).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(
            missing["error"]
                .as_str()
                .is_some_and(|e| e.contains("nobody"))
        );
    }
}

#[tokio::test]
async fn the_host_list_filters_the_whole_fleet_by_release_state_protection_and_contact() {
    for h in common::harnesses().await {
        fleet(&h).await;
        let names = |list: &Value| -> Vec<String> {
            list["hosts"]
                .as_array()
                .expect("hosts")
                .iter()
                .map(|host| host["hostname"].as_str().expect("name").to_owned())
                .collect()
        };
        let get = |query: &'static str| {
            let h = &h;
            async move {
                let (status, list) = h
                    .get(&format!("/api/v1/hosts{query}"), Some(&h.operator))
                    .await;
                assert_eq!(status, StatusCode::OK, "{query}: {list}");
                list
            }
        };
        let all = get("").await;
        assert_eq!(all["total"], 6, "{}", h.name);
        assert_eq!(all["matched"], 6);
        assert_eq!(all["truncated"], false);
        // Degraded first, then by name.
        assert_eq!(
            names(&all),
            ["sick-host", "canary-1", "web-1", "web-2", "web-3", "web-4"]
        );
        assert_eq!(names(&get("?degraded=true").await), ["sick-host"]);
        assert_eq!(get("?degraded=false").await["matched"], 5);
        assert_eq!(
            names(&get("?release=allow@2.0.0").await),
            ["web-1", "web-2"],
            "web-4 has 2.0.0 installed but runs its last known good"
        );
        assert_eq!(names(&get("?state=lkg").await), ["canary-1", "web-4"]);
        assert_eq!(get("?state=online").await["matched"], 6);
        assert_eq!(get("?state=offline").await["matched"], 0);
        assert_eq!(get("?seen_within_s=60").await["matched"], 6);
        assert_eq!(get("?unseen_for_s=86400").await["matched"], 0);
        assert_eq!(names(&get("?name=WEB-3").await), ["web-3"]);
        assert_eq!(
            names(&get("?release=allow@1.0.0&state=online").await),
            ["web-3", "web-4"],
            "web-4 runs 1.0.0 from its last known good slot"
        );
        let two = get("?limit=2").await;
        assert_eq!(names(&two).len(), 2);
        assert_eq!(two["matched"], 6);
        assert_eq!(two["truncated"], true);
        // A filter nobody knows is refused in words, not ignored.
        let (status, refused) = h.get("/api/v1/hosts?colour=red", Some(&h.operator)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
        assert!(refused["error"].is_string(), "{refused}");
        let (status, _) = h.get("/api/v1/hosts", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn rollouts_show_adoption_per_ring_and_the_controller_keeps_gate_history() {
    for h in common::harnesses().await {
        let allow = fleet(&h).await.allow;
        controller::tick(&h.state).await.expect("tick");
        let (status, rollout) = h
            .get(&format!("/api/v1/rollouts/{allow}"), Some(&h.operator))
            .await;
        assert_eq!(status, StatusCode::OK, "{rollout}");
        let rings = rollout["rings"].as_array().expect("rings");
        // Rings are cumulative: the last holds every host, and two of the six run 2.0.0 (web-4
        // has it installed but runs its last known good).
        assert_eq!(rings[3]["hosts"], 6, "{}: {rollout}", h.name);
        assert_eq!(rings[3]["on_release"], 2, "{}", h.name);
        // The canary ring holds the canary-tagged host, which does not run the channel.
        assert!(rings[0]["hosts"].as_u64().is_some_and(|n| n >= 1));
        assert_eq!(rings[0]["on_release"], 0);
        let (status, history) = h
            .get(
                &format!("/api/v1/rollouts/{allow}/gates"),
                Some(&h.operator),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{history}");
        assert_eq!(history["rollout_id"], allow.as_str());
        let gates = history["gates"].as_array().expect("gates");
        let crashes = gates
            .iter()
            .find(|g| g["gate"] == "crashes")
            .unwrap_or_else(|| panic!("{}: no crash gate series: {history}", h.name));
        assert_eq!(crashes["unit"], "per_agent");
        assert_eq!(crashes["points"].as_array().map(Vec::len), Some(1));
        assert_eq!(crashes["points"][0]["passed"], true);
        // The rollout in detail carries the same history.
        let (_, detail) = h
            .get(&format!("/api/v1/rollouts/{allow}"), Some(&h.operator))
            .await;
        assert_eq!(detail["gate_history"], history["gates"], "{}", h.name);
        // A second tick within the bake's sampling interval (600 s / 120) adds no point.
        controller::tick(&h.state).await.expect("tick");
        let (_, again) = h
            .get(
                &format!("/api/v1/rollouts/{allow}/gates"),
                Some(&h.operator),
            )
            .await;
        assert_eq!(
            again["gates"][0]["points"].as_array().map(Vec::len),
            Some(1)
        );
        let (status, _) = h
            .get("/api/v1/rollouts/ro-none/gates", Some(&h.operator))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // Old finished rollouts past the newest ten are listed without adoption (each costs a
        // hash per host); running ones always have it.
        let records = h.state.store.rollouts().await.expect("rollouts");
        let finished = records
            .iter()
            .find(|r| r.channel == "detection")
            .expect("the disabled rollout");
        for n in 0..10 {
            let mut copy = finished.clone();
            copy.id = format!("ro-old-{n}");
            h.state.store.insert_rollout(&copy).await.expect("insert");
        }
        let (_, listed) = h.get("/api/v1/rollouts", Some(&h.operator)).await;
        let listed = listed["rollouts"].as_array().expect("rollouts");
        assert_eq!(listed.len(), 12, "{}", h.name);
        let has_adoption = |id: &str| {
            let rollout = listed.iter().find(|r| r["id"] == id).expect("listed");
            rollout["rings"][0].get("hosts").is_some()
        };
        assert!(has_adoption(&allow), "{}", h.name);
        assert!(has_adoption("ro-old-0"), "{}", h.name);
        assert!(!has_adoption(&finished.id), "{}", h.name);
    }
}
