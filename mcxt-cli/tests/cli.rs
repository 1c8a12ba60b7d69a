//! The `mcxt` binary: JSON output of `replay`, `stats --at`, `plot`, and
//! errors.

mod common;

use std::process::Command;

use mcxt_cli::peak::measure_peak;
use mcxt_cli::replay::mcxt::McxtBackend;
use mcxt_cli::replay::Replay;
use mcxt_cli::stats::{stats_at, At};

fn mcxt() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mcxt"))
}

#[test]
fn replay_json_has_the_documented_keys() {
    let path = common::shipped_trace_path();
    let out = mcxt()
        .args([
            "replay",
            "--json",
            "--repeat",
            "2",
            "--allocator",
            "mcxt,malloc,null",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 3);
    let allocs: Vec<&str> = rows
        .iter()
        .map(|r| r["allocator"].as_str().unwrap())
        .collect();
    assert_eq!(allocs, ["mcxt", "malloc", "null"]);
    for r in &rows {
        for key in [
            "trace",
            "allocator",
            "ops",
            "replay_ns_min",
            "replay_ns_median",
            "ns_per_op",
            "peak_bytes",
            "check_errors",
            "substituted_kinds",
            "peak_bytes_system",
            "ratio_to_malloc",
            "peak_ratio_to_malloc",
            "net_ns_per_op",
            "net_ratio_to_malloc",
        ] {
            assert!(r.get(key).is_some(), "missing key {key} in {r}");
        }
        assert_eq!(r["trace"], "pgbench-small.trace.gz");
        assert_eq!(r["ops"], 685_936);
        assert_eq!(r["repeat"], 2);
        assert!(r["check_errors"].is_null());
        assert!(r["replay_ns_min"].as_u64().unwrap() <= r["replay_ns_median"].as_u64().unwrap());
        let per_op = r["replay_ns_min"].as_f64().unwrap() / 685_936.0;
        assert!((r["ns_per_op"].as_f64().unwrap() - per_op).abs() < 1e-6);
    }
    // mcxt has every kind of the trace (aset, generation, slab, bump)
    for r in &rows {
        assert!(r["substituted_kinds"].as_array().unwrap().is_empty(), "{r}");
    }
    assert!(rows[0]["peak_bytes"].as_u64().unwrap() > 1 << 20);
    assert!(rows[1]["peak_bytes"].as_u64().unwrap() > 1 << 20);
    assert_eq!(rows[2]["peak_bytes"], 0);
    assert_eq!(rows[1]["ratio_to_malloc"], 1.0);
    // net of the null replay of the same run
    let ns = |r: &serde_json::Value| r["ns_per_op"].as_f64().unwrap();
    for r in &rows {
        let net = r["net_ns_per_op"].as_f64().unwrap();
        assert!((net - (ns(r) - ns(&rows[2]))).abs() < 1e-9, "{r}");
    }
    assert_eq!(rows[2]["net_ns_per_op"], 0.0);
    assert!(rows[2]["net_ratio_to_malloc"].is_null());
    assert_eq!(rows[1]["net_ratio_to_malloc"], 1.0);
}

#[test]
fn replay_check_json_reports_zero_errors() {
    let out = mcxt()
        .args([
            "replay",
            "--json",
            "--check",
            "--repeat",
            "1",
            "--allocator",
            "mimalloc",
        ])
        .arg(common::shipped_trace_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(row["check_errors"], 0);
    assert!(row["ratio_to_malloc"].is_null());
    // no null replay: no net figures
    assert!(row["net_ns_per_op"].is_null());
    assert!(row["net_ratio_to_malloc"].is_null());
}

#[test]
fn replay_table_and_errors() {
    let out = mcxt()
        .args(["replay", "--repeat", "1", "--allocator", "null"])
        .arg(common::shipped_trace_path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("ns/op"), "{text}");
    assert!(text.contains("pgbench-small.trace.gz  null"), "{text}");
    assert!(text.contains("net ns/op"), "{text}");

    let out = mcxt()
        .args(["replay", "/nonexistent.trace.gz"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot open"));

    let out = mcxt()
        .args(["replay", "--repeat", "0", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn stats_at_an_operation() {
    let out = mcxt()
        .args(["stats", "--at", "5000"])
        .arg(common::shipped_trace_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "# pgbench-small.trace.gz: after 5000 of 685936 operations"
    );
    assert!(
        lines.next().unwrap().starts_with("TopMemoryContext: "),
        "{text}"
    );
    assert!(
        text.contains("\n  ErrorContext: 8192 total in 1 blocks;"),
        "{text}"
    );
    assert!(text.contains("\nGrand total: "), "{text}");
    assert!(
        text.lines().last().unwrap().starts_with("# held: "),
        "{text}"
    );

    let out = mcxt()
        .args(["stats", "--at", "99999999"])
        .arg(common::shipped_trace_path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("only 685936 operations"));

    // at 0 nothing exists yet
    let t = common::shipped_trace();
    let s = stats_at(&t, At::Op(0)).unwrap();
    assert_eq!((s.text.as_str(), s.context_bytes), ("", 0));
}

#[test]
fn stats_at_peak_holds_the_peak() {
    let t = common::shipped_trace();
    let mut r = Replay::<McxtBackend>::new(&t);
    let peak = measure_peak(&mut r, 10);
    drop(r);
    let s = stats_at(&t, At::Peak).unwrap();
    assert_eq!(s.ops_done, peak.peak_op);
    assert_eq!(s.context_bytes + s.cached_bytes, peak.peak_bytes);
    // The grand totals of the trees add up to the contexts' bytes.
    let grand: u64 = s
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("Grand total: "))
        .map(|l| l.split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(grand, s.context_bytes);
    let text = s.render(&t.name, At::Peak);
    assert!(text.starts_with(&format!(
        "# pgbench-small.trace.gz: after {} of 685936 operations (mcxt's peak)\n",
        peak.peak_op
    )));
}

#[test]
fn plot_writes_an_svg() {
    let dir = std::env::temp_dir().join(format!("mcxt-cli-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("tiny.svg");
    let trace = dir.join("tiny.trace");
    std::fs::write(&trace, common::TINY).unwrap();
    let out = mcxt()
        .arg("plot")
        .arg(&trace)
        .arg("-o")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"), "{}", &text[..100.min(text.len())]);
    assert!(text.contains("TopMemoryContext"));
    assert!(text.contains("mcxt: peak"));
    std::fs::remove_dir_all(&dir).unwrap();
}
