//! Whole traces: counts of a small valid trace, writing and re-parsing,
//! gzip input, the shipped sample trace against `trace-check.py`'s numbers,
//! and (ignored by default) the big shared traces.

use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use mcxt_trace::{
    parse_file, parse_reader, parse_str, ContextKind, Flags, KindCounts, Op, OpCounts, Trace,
};

const SMALL: &str = "mcxt-trace 1
# workload: unit test
C 1 - aset 0 8192 8388608 TopMemoryContext
C 2 1 aset 0 1024 8192 child one
A 1 1 100 z
A 2 2 200 -
A 3 2 300 hn 128
C 3 2 slab 8192 48 0 slab ctx
A 4 3 48 -
A 5 3 48 z
F 4
C 4 1 bump 0 8192 8192 bump
A 6 4 0 -
R 2 250
R 1 2000000000 h
# a comment in the middle
X 2
O 1
C 5 - generation 0 8192 65536 gen root
A 7 5 16 -
P 5 4
P 4 -
H 1
D 4
";

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn small_trace_counts() {
    let t = parse_str("small.trace", SMALL).unwrap();
    assert_eq!(t.name, "small.trace");
    assert_eq!(t.ops.len(), 21);
    assert_eq!(t.n_contexts, 5);
    assert_eq!(t.n_chunks, 7);
    assert_eq!(t.creates.len(), 5);
    assert_eq!(
        t.comments,
        vec![" workload: unit test", " a comment in the middle"]
    );
    let s = &t.stats;
    assert_eq!(
        s.ops,
        OpCounts {
            create: 5,
            alloc: 7,
            realloc: 2,
            free: 1,
            reset: 1,
            reset_only: 1,
            delete_children: 1,
            delete: 1,
            set_parent: 2,
        }
    );
    assert_eq!(s.ops.total(), 21);
    assert_eq!(s.ops.get('P'), 2);
    assert_eq!(s.comments, 2);
    assert_eq!(s.contexts_created, 5);
    // 1, 2, 3, 4 before X 2 (which deletes 3); 1, 2, 4, 5 after C 5
    assert_eq!(s.max_live_contexts, 4);
    assert_eq!(s.max_depth, 3);
    assert_eq!(
        s.contexts_by_kind,
        KindCounts {
            aset: 2,
            generation: 1,
            slab: 1,
            bump: 1
        }
    );
    assert_eq!(
        s.allocs_by_kind,
        KindCounts {
            aset: 3,
            generation: 1,
            slab: 2,
            bump: 1
        }
    );
    assert_eq!(s.chunks_allocated, 7);
    assert_eq!(s.chunks_freed, 1);
    // X 2: chunks 2, 3 (ctx 2) and 5 (ctx 3); O 1: chunk 1; D 4: 6 (ctx 4), 7 (ctx 5)
    assert_eq!(s.chunks_died_with_context, 6);
    assert_eq!(s.live_chunks_at_end, 0);
    assert_eq!(s.max_live_chunks, 5);
    assert_eq!((s.flag_zero, s.flag_huge, s.flag_no_oom), (2, 1, 1));
    assert_eq!(s.aligned_allocs, 1);
    assert_eq!(s.bytes_requested, 100 + 200 + 300 + 48 + 48 + 16);
    assert_eq!(s.bytes_repalloc, 250 + 2000000000);
    assert_eq!(s.max_live_bytes, 2000000000 + 250 + 300 + 48);
    assert_eq!(s.live_bytes_at_end, 0);
    assert_eq!(s.live_contexts_at_end, 1);
    let hist: Vec<(u128, u64)> = s.size_histogram_entries().collect();
    assert_eq!(
        hist,
        vec![(0, 1), (16, 1), (64, 2), (128, 1), (256, 1), (512, 1)]
    );

    assert_eq!(
        t.ops[0],
        Op::Create {
            ctx: 0,
            parent: None,
            kind: ContextKind::AllocSet,
            spec: 0
        }
    );
    assert_eq!(
        t.ops[4],
        Op::Alloc {
            chunk: 2,
            ctx: 1,
            size: 300,
            flags: Flags::HUGE | Flags::NO_OOM,
            align: 128
        }
    );
    assert_eq!(t.ops[8], Op::Free { chunk: 3 });
    assert_eq!(t.ops[13], Op::Reset { ctx: 1 });
    assert_eq!(t.ops[14], Op::ResetOnly { ctx: 0 });
    assert_eq!(
        t.ops[17],
        Op::SetParent {
            ctx: 4,
            parent: Some(3)
        }
    );
    assert_eq!(
        t.ops[18],
        Op::SetParent {
            ctx: 3,
            parent: None
        }
    );
    assert_eq!(t.ops[19], Op::DeleteChildren { ctx: 0 });
    assert_eq!(t.ops[20], Op::Delete { ctx: 3 });
    assert_eq!(t.creates[2].name, "slab ctx");
    assert_eq!(
        (t.creates[2].p1, t.creates[2].p2, t.creates[2].p3),
        (8192, 48, 0)
    );
    let letters: String = t.ops.iter().map(Op::letter).collect();
    assert_eq!(letters, "CCAAACAAFCARRXOCAPPHD");
    assert_eq!(t.ops[4].chunk(), Some(2));
    assert_eq!(t.ops[4].ctx(), Some(1));
    assert_eq!(t.ops[8].ctx(), None);
}

#[test]
fn op_lines() {
    let t = parse_str("small.trace", SMALL).unwrap();
    let lines: Vec<String> = t
        .ops
        .iter()
        .map(|op| t.display_op(op).to_string())
        .collect();
    let original: Vec<&str> = SMALL
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with('#'))
        .collect();
    // identical except flags order ("hn") and the optional R flags
    assert_eq!(lines, original);
}

fn round_trip(t: &Trace) {
    let mut out = Vec::new();
    t.write_to(&mut out).unwrap();
    let back = parse_reader(&t.name, &out[..]).unwrap();
    assert_eq!(back.ops, t.ops);
    assert_eq!(back.creates, t.creates);
    assert_eq!(back.comments, t.comments);
    assert_eq!((back.n_contexts, back.n_chunks), (t.n_contexts, t.n_chunks));
    assert_eq!(back.stats, t.stats);
    // and once more through gzip
    let back = parse_reader(&t.name, &gz(&out)[..]).unwrap();
    assert_eq!(&back, t);
}

#[test]
fn round_trip_small() {
    round_trip(&parse_str("small.trace", SMALL).unwrap());
    // flags written in canonical order, R flags "-" dropped: same ops
    let t = parse_str(
        "x",
        "mcxt-trace 1\nC 1 - aset 0 0 0 a b\nA 1 1 8 nz\nR 1 9 -\nR 1 10 nh\n",
    )
    .unwrap();
    let mut out = Vec::new();
    t.write_to(&mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "mcxt-trace 1\nC 1 - aset 0 0 0 a b\nA 1 1 8 zn\nR 1 9\nR 1 10 hn\n"
    );
    round_trip(&t);
}

#[test]
fn gzip_input() {
    let t = parse_reader("s.gz", &gz(SMALL.as_bytes())[..]).unwrap();
    assert_eq!(t, parse_str("s.gz", SMALL).unwrap());
    // several gzip members, split mid-line
    let (a, b) = SMALL.as_bytes().split_at(100);
    let mut multi = gz(a);
    multi.extend(gz(b));
    assert_eq!(parse_reader("s.gz", &multi[..]).unwrap(), t);
    // truncated gzip: an error, not a panic
    let full = gz(SMALL.as_bytes());
    for cut in [2, 5, 10, full.len() / 2, full.len() - 4, full.len() - 1] {
        let e = parse_reader("cut.gz", &full[..cut]).unwrap_err();
        assert_eq!(e.file, "cut.gz");
        assert!(e.line >= 1);
    }
    // garbage after the magic
    let e = parse_reader("bad.gz", &[0x1f, 0x8b, 0, 1, 2, 3, 4][..]).unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.reason.starts_with("read error"), "{e}");
    // a single byte, or only the magic
    assert!(parse_reader("x", &[0x1f][..]).is_err());
    assert!(parse_reader("x", &[0x1f, 0x8b][..]).is_err());
    // a compressed empty file
    let e = parse_reader("e.gz", &gz(b"")[..]).unwrap_err();
    assert!(e.reason.contains("empty input"), "{e}");
}

#[test]
fn parse_file_plain_and_gz() {
    let dir = std::env::temp_dir().join(format!("mcxt-trace-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("small.trace");
    let zipped = dir.join("small.trace.gz");
    std::fs::write(&plain, SMALL).unwrap();
    std::fs::write(&zipped, gz(SMALL.as_bytes())).unwrap();
    let a = parse_file(&plain).unwrap();
    let b = parse_file(&zipped).unwrap();
    assert_eq!(a.name, "small.trace");
    assert_eq!(b.name, "small.trace.gz");
    assert_eq!(a.ops, b.ops);
    std::fs::write(&plain, "mcxt-trace 1\nF 1\n").unwrap();
    let e = parse_file(&plain).unwrap_err();
    assert_eq!(e.file, plain.display().to_string());
    assert_eq!(e.line, 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn sample_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../traces/pgbench-small.trace.gz")
}

/// `python3 trace-check.py traces/pgbench-small.trace.gz`, after its
/// `== FILE: PASS` line.
const SAMPLE_REPORT: &str = "  operations: 685936  (C 8339, A 540641, R 7, F 88377, X 37987, O 0, H 2415, D 8170, P 0)
  contexts: 8339 created, max live 137, live at end 130, max tree depth 6
  context kinds: aset 8306, generation 3, bump 10, slab 20
  allocations by context kind: aset 530615, generation 5011, bump 5011, slab 4
  chunks: 540641 allocated, 88377 freed by F, 449410 died with a reset/delete, 2854 live at end, max live 12873
  flags: z 244654, h 2, n 278; aligned allocations 106
  bytes requested by A: 105491199 (100.6 MiB); by R (new sizes): 718336 (701.5 KiB)
  max live bytes requested: 2497951 (2.4 MiB)
  A size histogram (size rounded up to a power of two):
    <=          0:      2015    0.4%
    <=          1:      4855    0.9%
    <=          2:       493    0.1%
    <=          4:     14075    2.6%
    <=          8:     20326    3.8%
    <=         16:     98014   18.1%
    <=         32:     35256    6.5%
    <=         64:    224765   41.6%
    <=        128:     46719    8.6%
    <=        256:     57757   10.7%
    <=        512:     16323    3.0%
    <=       1024:     17199    3.2%
    <=       2048:       110    0.0%
    <=       4096:       888    0.2%
    <=       8192:        44    0.0%
    <=      16384:         5    0.0%
    <=      32768:      1783    0.3%
    <=      65536:         4    0.0%
    <=     131072:         5    0.0%
    <=     262144:         4    0.0%
    <=     524288:         1    0.0%
";

#[test]
fn shipped_sample_matches_trace_check() {
    let path = sample_path();
    let t = parse_file(&path).unwrap();
    assert_eq!(t.name, "pgbench-small.trace.gz");
    let s = &t.stats;
    assert_eq!(t.ops.len(), 685_936);
    assert_eq!(s.ops.total(), 685_936);
    assert_eq!(
        s.ops,
        OpCounts {
            create: 8339,
            alloc: 540_641,
            realloc: 7,
            free: 88_377,
            reset: 37_987,
            reset_only: 0,
            delete_children: 2415,
            delete: 8170,
            set_parent: 0,
        }
    );
    assert_eq!((t.n_contexts, t.n_chunks), (8339, 540_641));
    assert_eq!(
        (
            s.contexts_created,
            s.max_live_contexts,
            s.live_contexts_at_end,
            s.max_depth
        ),
        (8339, 137, 130, 6)
    );
    assert_eq!(
        s.contexts_by_kind,
        KindCounts {
            aset: 8306,
            generation: 3,
            slab: 20,
            bump: 10
        }
    );
    assert_eq!(
        s.allocs_by_kind,
        KindCounts {
            aset: 530_615,
            generation: 5011,
            slab: 4,
            bump: 5011
        }
    );
    assert_eq!(
        (
            s.chunks_allocated,
            s.chunks_freed,
            s.chunks_died_with_context,
            s.live_chunks_at_end,
            s.max_live_chunks
        ),
        (540_641, 88_377, 449_410, 2854, 12_873)
    );
    assert_eq!(
        (s.flag_zero, s.flag_huge, s.flag_no_oom, s.aligned_allocs),
        (244_654, 2, 278, 106)
    );
    assert_eq!(s.bytes_requested, 105_491_199);
    assert_eq!(s.bytes_repalloc, 718_336);
    assert_eq!(s.max_live_bytes, 2_497_951);
    assert_eq!(s.comments, 9);
    assert_eq!(s.to_string(), SAMPLE_REPORT);
    round_trip(&t);
}

/// Each op references only ids that exist, in the order the format
/// promises: creation and allocation ids are consecutive.
#[test]
fn shipped_sample_ids_are_dense() {
    let t = parse_file(&sample_path()).unwrap();
    let (mut next_ctx, mut next_chunk) = (0u32, 0u32);
    for op in &t.ops {
        match *op {
            Op::Create {
                ctx, spec, parent, ..
            } => {
                assert_eq!((ctx, spec), (next_ctx, next_ctx));
                assert!(parent.is_none_or(|p| p < ctx));
                next_ctx += 1;
            }
            Op::Alloc { chunk, ctx, .. } => {
                assert_eq!(chunk, next_chunk);
                assert!(ctx < next_ctx);
                next_chunk += 1;
            }
            _ => {
                assert!(op.ctx().is_none_or(|c| c < next_ctx));
                assert!(op.chunk().is_none_or(|c| c < next_chunk));
            }
        }
    }
    assert_eq!((next_ctx, next_chunk), (t.n_contexts, t.n_chunks));
}

struct Expected {
    file: &'static str,
    ops: OpCounts,
    max_live_ctx: u64,
    live_ctx_end: u64,
    depth: u32,
    kinds: KindCounts,
    allocs: KindCounts,
    died: u64,
    live_chunks_end: u64,
    max_live_chunks: u64,
    flags: (u64, u64, u64, u64),
    bytes: (u128, u128, u128),
}

/// The numbers of shared/traces/README.md (from `trace-check.py`).
fn big_expected() -> Vec<Expected> {
    vec![
        Expected {
            file: "pgbench-tpcb.trace.gz",
            ops: OpCounts {
                create: 62_246,
                alloc: 4_668_100,
                realloc: 16,
                free: 1_206_787,
                reset: 1_131_127,
                reset_only: 0,
                delete_children: 18_015,
                delete: 62_077,
                set_parent: 0,
            },
            max_live_ctx: 137,
            live_ctx_end: 130,
            depth: 6,
            kinds: KindCounts {
                aset: 62_213,
                generation: 3,
                bump: 10,
                slab: 20,
            },
            allocs: KindCounts {
                aset: 4_268_051,
                generation: 200_023,
                bump: 200_022,
                slab: 4,
            },
            died: 3_458_459,
            live_chunks_end: 2854,
            max_live_chunks: 203_063,
            flags: (2_290_752, 2, 278, 641),
            bytes: (628_576_137, 14_664_392, 11_010_733),
        },
        Expected {
            file: "analytic.trace.gz",
            ops: OpCounts {
                create: 784,
                alloc: 2_844_055,
                realloc: 95,
                free: 1_335_505,
                reset: 2_523_235,
                reset_only: 2,
                delete_children: 23,
                delete: 473,
                set_parent: 0,
            },
            max_live_ctx: 159,
            live_ctx_end: 132,
            depth: 8,
            kinds: KindCounts {
                aset: 696,
                generation: 10,
                bump: 78,
                slab: 0,
            },
            allocs: KindCounts {
                aset: 2_570_558,
                generation: 70_223,
                bump: 203_274,
                slab: 0,
            },
            died: 1_504_913,
            live_chunks_end: 3637,
            max_live_chunks: 64_054,
            flags: (498_046, 42, 276, 285),
            bytes: (130_994_114, 15_569_532, 6_354_612),
        },
        Expected {
            file: "plpgsql.trace.gz",
            ops: OpCounts {
                create: 150_305,
                alloc: 2_716_772,
                realloc: 12_934,
                free: 953_755,
                reset: 533_838,
                reset_only: 0,
                delete_children: 2156,
                delete: 122_134,
                set_parent: 1484,
            },
            max_live_ctx: 485,
            live_ctx_end: 432,
            depth: 7,
            kinds: KindCounts {
                aset: 145_070,
                generation: 5210,
                bump: 25,
                slab: 0,
            },
            allocs: KindCounts {
                aset: 2_686_961,
                generation: 25_609,
                bump: 4202,
                slab: 0,
            },
            died: 1_752_679,
            live_chunks_end: 10_338,
            max_live_chunks: 34_522,
            flags: (651_845, 8, 2129, 96),
            bytes: (431_592_053, 13_102_816, 2_612_873),
        },
    ]
}

/// The big shared traces (4.5-7 M operations each): slow in a debug build,
/// so ignored by default. Run with
/// `cargo test --release -p mcxt-trace -- --ignored`. Skipped when
/// `../shared/traces` (or `$MCXT_TRACES_DIR`) is absent.
#[test]
#[ignore]
fn big_shared_traces() {
    let dir = std::env::var_os("MCXT_TRACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces"));
    for e in big_expected() {
        let path = dir.join(e.file);
        if !path.exists() {
            eprintln!("skipping {}: not found", path.display());
            continue;
        }
        let t0 = std::time::Instant::now();
        let t = parse_file(&path).unwrap();
        eprintln!(
            "{}: {} ops in {:.3} s",
            e.file,
            t.ops.len(),
            t0.elapsed().as_secs_f64()
        );
        let s = &t.stats;
        assert_eq!(s.ops, e.ops, "{}", e.file);
        assert_eq!(t.ops.len() as u64, e.ops.total());
        assert_eq!(s.contexts_created, e.ops.create);
        assert_eq!(s.max_live_contexts, e.max_live_ctx);
        assert_eq!(s.live_contexts_at_end, e.live_ctx_end);
        assert_eq!(s.max_depth, e.depth);
        assert_eq!(s.contexts_by_kind, e.kinds);
        assert_eq!(s.allocs_by_kind, e.allocs);
        assert_eq!(s.chunks_freed, e.ops.free);
        assert_eq!(s.chunks_died_with_context, e.died);
        assert_eq!(s.live_chunks_at_end, e.live_chunks_end);
        assert_eq!(s.max_live_chunks, e.max_live_chunks);
        assert_eq!(
            (s.flag_zero, s.flag_huge, s.flag_no_oom, s.aligned_allocs),
            e.flags
        );
        assert_eq!(
            (s.bytes_requested, s.bytes_repalloc, s.max_live_bytes),
            e.bytes
        );
    }
}
