//! `diffmart bench` with tiny parameters: every scenario runs and the JSON report
//! has the figures the README quotes (no performance is asserted).

use std::process::Command;

use serde_json::Value;

fn number(report: &Value, pointer: &str) -> f64 {
    report.pointer(pointer).and_then(Value::as_f64).unwrap_or_else(|| panic!("{pointer} is not a number in {report:#}"))
}

fn boolean(report: &Value, pointer: &str) -> bool {
    report
        .pointer(pointer)
        .and_then(Value::as_bool)
        .unwrap_or_else(|| panic!("{pointer} is not a boolean in {report:#}"))
}

fn assert_latency(report: &Value, pointer: &str) {
    let (median, p99, max) = (
        number(report, &format!("{pointer}/median")),
        number(report, &format!("{pointer}/p99")),
        number(report, &format!("{pointer}/max")),
    );
    assert!(number(report, &format!("{pointer}/samples")) > 0.0, "{pointer} has no samples");
    assert!(0.0 <= median && median <= p99 && p99 <= max, "{pointer}: {median} {p99} {max}");
}

/// Five busiest operators (`--operator-profile 5`), busiest first, each a share of
/// all operators' time, each of a known pipeline, and not all of them compute's own.
fn assert_operator_summary(summary: &Value) {
    let operators = summary["busiest"].as_array().unwrap();
    assert_eq!(operators.len(), 5);
    let busy: Vec<f64> = operators.iter().map(|o| o["busy_ms"].as_f64().unwrap()).collect();
    assert!(busy.windows(2).all(|w| w[0] >= w[1]), "not busiest first: {busy:?}");
    assert!(busy.iter().sum::<f64>() <= summary["busy_ms"].as_f64().unwrap() + 1e-6);
    let known = ["compute", "retail", "ecommerce", "casino", "inventory", "pricing", "system"];
    assert!(operators.iter().all(|o| known.contains(&o["pipeline"].as_str().unwrap())), "{operators:?}");
    assert!(operators.iter().any(|o| o["pipeline"] != "compute"), "no pipeline operator among {operators:?}");
}

#[test]
fn every_scenario_runs_and_writes_the_json_report() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let output = Command::new(env!("CARGO_BIN_EXE_diffmart"))
        .args(["bench", "--workloads", "retail,all", "--workers", "1", "--rate", "2000", "--duration", "1s"])
        .args(["--warmup", "1s"])
        .args(["--probe-duration", "1s", "--search-start", "2000", "--search-max", "4000", "--search-steps", "1"])
        .args(["--history-rate", "2000", "--history-window", "1s", "--history-short", "1m", "--history-long", "3m"])
        .args(["--delta-state", "5000", "--delta-events", "100", "--delta-repeats", "3"])
        .args(["--read-duration", "1s", "--read-prefill", "10m", "--operator-profile", "5", "--json"])
        .arg(&json)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "bench failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    for section in [
        "Freshness",
        "Busiest operators",
        "Highest offered rate",
        "Cost versus history",
        "Delta of 100 events",
        "Reads over pgwire",
    ] {
        assert!(stdout.contains(section), "no {section} in the table:\n{stdout}");
    }
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(report["command"].as_str().unwrap().contains("bench --workloads retail,all"));
    assert!(number(&report, "/machine/cpus") >= 1.0);

    // One freshness run per workload, each with every event accounted for.
    let freshness = report["freshness"].as_array().unwrap();
    assert_eq!(freshness.len(), 2);
    for (i, workload) in ["retail", "all"].iter().enumerate() {
        assert_eq!(freshness[i]["workload"], *workload);
        assert_eq!(freshness[i]["workers"], 1);
        assert_eq!(number(&report, &format!("/freshness/{i}/offered_rate")), 2000.0);
        // A second of warm-up, then the measured second: each measured apart.
        assert_eq!(number(&report, &format!("/freshness/{i}/events_sent")), 4000.0);
        assert_eq!(number(&report, &format!("/freshness/{i}/warmup_seconds")), 1.0);
        assert_latency(&report, &format!("/freshness/{i}/freshness_ms"));
        assert_latency(&report, &format!("/freshness/{i}/warmup_freshness_ms"));
        assert_eq!(number(&report, &format!("/freshness/{i}/freshness_ms/samples")), 2000.0);
        assert_eq!(number(&report, &format!("/freshness/{i}/warmup_freshness_ms/samples")), 2000.0);
        boolean(&report, &format!("/freshness/{i}/sustained"));
        assert!(number(&report, &format!("/freshness/{i}/cpu_us_per_event")) > 0.0);
        assert_operator_summary(&freshness[i]["operators"]);
    }

    let searches = report["max_rate"].as_array().unwrap();
    assert_eq!(searches.len(), 2);
    for (i, search) in searches.iter().enumerate() {
        assert!(!search["probes"].as_array().unwrap().is_empty());
        let max = number(&report, &format!("/max_rate/{i}/max_sustained_rate"));
        assert!((0.0..=4000.0).contains(&max), "{max}");
    }

    assert_eq!(report["history"]["workload"], "all");
    for point in ["short", "long"] {
        assert!(number(&report, &format!("/history/{point}/retained_input_rows")) > 0.0);
        assert!(number(&report, &format!("/history/{point}/rss_bytes")) > 0.0);
        assert_latency(&report, &format!("/history/{point}/window/freshness_ms"));
    }
    assert!(number(&report, "/history/long/event_time_hours") > number(&report, "/history/short/event_time_hours"));
    assert!(number(&report, "/history/long/events_before") > number(&report, "/history/short/events_before"));
    assert!(number(&report, "/history/cpu_ratio") > 0.0);
    assert!(number(&report, "/history/peak_rss_bytes_per_retained_event") > 0.0);
    assert!(number(&report, "/history/rss_bytes_per_retained_event") > 0.0);

    assert_eq!(report["delta"]["workload"], "retail");
    assert_eq!(number(&report, "/delta/state_events"), 5000.0);
    assert_eq!(number(&report, "/delta/absorb_ms/samples"), 3.0);
    assert_latency(&report, "/delta/absorb_ms");
    assert!(number(&report, "/delta/retained_input_rows") >= 5000.0);
    assert_operator_summary(&report["delta"]["operators"]);

    // Reads ran at half the rate the search sustained for `all` on 1 worker.
    let sustained_all = number(&report, "/max_rate/1/max_sustained_rate");
    if sustained_all > 0.0 {
        assert_eq!(number(&report, "/reads/offered_rate"), (sustained_all / 2.0).round());
    }
    assert_latency(&report, "/reads/point_lookup/latency_ms");
    assert_latency(&report, "/reads/full_scan/latency_ms");
    assert_eq!(number(&report, "/reads/point_lookup/rows"), 1.0, "sales_profit has one row per product");
    assert!(number(&report, "/reads/full_scan/rows") > 0.0);
    boolean(&report, "/reads/reads_stall_ingestion");
    assert_eq!(number(&report, "/reads/client_nice"), 19.0, "the server's default --client-nice");
}

#[test]
fn bad_options_are_refused_with_a_clear_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_diffmart")).args(["bench", "--rate", "0"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--rate must be a positive number"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_diffmart")).args(["bench", "--scenarios", "nope"]).output().unwrap();
    assert!(!output.status.success());
}
