//! `--metrics` on the `cti-server` binary: the exposition parses as a
//! scraper would read it, follows the naming conventions (prefix `cti_`,
//! counters `_total`, durations in seconds, one label set per family) and
//! its values move with the traffic served.

mod common;

use test_kit::metrics::Exposition;

fn scrape(s: &common::Binary) -> Exposition {
    test_kit::metrics::scrape(s.metrics.expect("started with --metrics"))
}

#[test]
fn families_follow_the_conventions() {
    let s = common::Binary::start(&["--metrics", "127.0.0.1:0"], &[]);
    assert!(s.get("/claim?name=n", &["Accept: text/plain"]).status == 200);
    let e = scrape(&s);
    for (name, family) in &e.families {
        assert!(name.starts_with("cti_"), "{name}");
        assert!(!family.help.is_empty(), "{name}");
        for unit in ["micro", "milli", "_us", "_ms"] {
            assert!(!name.contains(unit), "{name}: durations are in seconds");
        }
    }
    let build = format!(
        "cti_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(e.value(&build), Some(1.0));
    let core: Vec<_> = e.samples_of("cti_core_info").collect();
    assert_eq!(core.len(), 1, "one core serves the store");
    assert_eq!(core[0].labels["version"], cti_ffi::version());
    let path = std::path::Path::new(&core[0].labels["path"]);
    assert!(path.is_file(), "the core's path {path:?}");
    // The core measures commits in microseconds; exported in seconds, the
    // first bound is 250 µs and a commit of this test takes well under 10 s.
    let buckets = e.buckets("cti_commit_duration_seconds");
    assert_eq!(buckets[0].0, 0.00025);
    let count = e.count("cti_commit_duration_seconds_count");
    let sum = e.count("cti_commit_duration_seconds_sum");
    assert!(
        count >= 1.0 && sum > 0.0 && sum / count < 10.0,
        "{sum} s over {count}"
    );
}

#[test]
fn values_move_with_the_traffic() {
    let s = common::Binary::start(&["--metrics", "127.0.0.1:0"], &[]);
    let before = scrape(&s);
    for _ in 0..5 {
        assert_eq!(s.get("/api/ip", &[]).status, 200);
    }
    assert_eq!(s.get("/nope", &[]).status, 404);
    assert_eq!(s.get("/claim?name=v", &["Accept: text/plain"]).status, 200);
    let after = scrape(&s);
    let grew = |selector: &str| after.count(selector) - before.count(selector);
    assert_eq!(
        grew("cti_http_requests_total{route=\"api_ip\",status=\"200\"}"),
        5.0
    );
    assert_eq!(
        grew("cti_http_requests_total{route=\"other\",status=\"404\"}"),
        1.0
    );
    assert_eq!(
        grew("cti_http_requests_total{route=\"claim\",status=\"200\"}"),
        1.0
    );
    assert_eq!(grew("cti_claims_committed_total"), 1.0);
    assert_eq!(grew("cti_commit_batch_size_count"), 1.0);
    assert!(grew("cti_commit_duration_seconds_count") >= 1.0);
    assert!(grew("cti_commit_duration_seconds_sum") > 0.0);
    assert_eq!(grew("cti_core_swaps_total"), 0.0);
    let labels = &after.families["cti_http_requests_total"].label_names;
    let want = ["route", "status"].map(String::from).into();
    assert_eq!(labels.as_ref(), Some(&want));
}
