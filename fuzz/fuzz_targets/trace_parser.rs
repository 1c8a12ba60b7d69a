//! Fuzz target: the trace parser must never panic, whatever the bytes.
//!
//! Run from the repository root: `cargo +nightly fuzz run --fuzz-dir fuzz trace_parser`
//! (or `fuzz/run.sh`). Seeds: `fuzz/seeds/trace_parser/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Raw bytes (also exercises the gzip path when they start with 1f 8b).
    check(mcxt_trace::parse_reader("fuzz", data));
    // With the header in front, so the bytes reach the operation parser.
    let mut with_header = b"mcxt-trace 1\n".to_vec();
    with_header.extend_from_slice(data);
    check(mcxt_trace::parse_reader("fuzz", &with_header[..]));
    if let Ok(s) = std::str::from_utf8(data) {
        check(mcxt_trace::parse_str("fuzz", s));
    }
});

/// On success, the result must be self-consistent and survive a round trip.
fn check(r: Result<mcxt_trace::Trace, mcxt_trace::TraceError>) {
    let Ok(t) = r else { return };
    let s = &t.stats;
    assert_eq!(s.ops.total(), t.ops.len() as u64);
    assert_eq!(
        s.chunks_allocated,
        s.chunks_freed + s.chunks_died_with_context + s.live_chunks_at_end
    );
    let mut out = Vec::new();
    t.write_to(&mut out).expect("write to a Vec");
    let back = mcxt_trace::parse_reader("fuzz", &out[..]).expect("round trip");
    assert_eq!(back.ops, t.ops);
    assert_eq!(back.creates, t.creates);
}
