//! Native matcher throughput at 10/100/1000 generated rules and content load time, with
//! plain std timing (`cargo bench -p ringfence-sigma --features protocol`). The product-level
//! comparison with the wasm engine is `ringfence bench sigma`.

use ringfence_protocol::Event;
use ringfence_sigma::{Config, Scratch, testgen};
use std::time::Instant;

fn main() {
    let events: Vec<Event> = ringfence_protocol::corpus::generate(100_000, 1)
        .into_iter()
        .filter(|e| matches!(e, Event::Exec(_) | Event::Open(_)))
        .collect();
    for count in [10, 100, 1000] {
        let content = testgen::rules(count, 1);
        let started = Instant::now();
        let loaded = ringfence_sigma::load(content.as_bytes(), &Config::default())
            .expect("generated content is UTF-8");
        let load = started.elapsed();
        let mut scratch = Scratch::default();
        let started = Instant::now();
        let mut alerts = 0usize;
        for event in &events {
            let verdict = ringfence_sigma::protocol::decide(&loaded.rules, event, &mut scratch);
            alerts += usize::from(verdict.action != ringfence_protocol::Action::Allow);
        }
        let per_second = events.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "{count:>5} rules: {per_second:>12.0} events/s per core, load {:>8.2} ms, {} needles, {alerts} alerts",
            load.as_secs_f64() * 1000.0,
            loaded.rules.needle_count(),
        );
    }
}
