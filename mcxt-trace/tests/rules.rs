//! Every rule of FORMAT.md: a violation is reported on the right line with
//! the right reason; the valid variants parse.

use mcxt_trace::{parse_reader, parse_str, ContextKind, Flags, Op, Trace, TraceError};

/// Parses `mcxt-trace 1\n` + `body`.
fn parse(body: &str) -> Result<Trace, TraceError> {
    parse_str("t.trace", &format!("mcxt-trace 1\n{body}"))
}

fn ok(body: &str) -> Trace {
    match parse(body) {
        Ok(t) => t,
        Err(e) => panic!("unexpected error: {e}\n--- trace:\n{body}"),
    }
}

/// Asserts that the body fails on `line` (1-based, the header is line 1)
/// with a reason containing `reason`.
#[track_caller]
fn fails(body: &str, line: u64, reason: &str) {
    match parse(body) {
        Ok(_) => panic!("expected an error at line {line} ({reason}), parsed OK:\n{body}"),
        Err(e) => {
            assert_eq!(e.file, "t.trace");
            assert_eq!(e.line, line, "wrong line for {e}\n--- trace:\n{body}");
            assert!(
                e.reason.contains(reason),
                "reason {:?} does not contain {reason:?}",
                e.reason
            );
            assert_eq!(e.to_string(), format!("t.trace:{line}: {}", e.reason));
        }
    }
}

const TOP: &str = "C 1 - aset 0 8192 8388608 Top\n";

#[test]
fn header() {
    assert!(parse_str("t.trace", "mcxt-trace 1\n").is_ok());
    let e = parse_str("t.trace", "").unwrap_err();
    assert_eq!((e.line, e.reason.contains("empty input")), (1, true));
    let e = parse_str("t.trace", "mcxt-trace 2\n").unwrap_err();
    assert_eq!(e.line, 1);
    assert!(e.reason.contains("expected 'mcxt-trace 1'"), "{e}");
    let e = parse_str("t.trace", "mcxt-trace 1 \n").unwrap_err();
    assert_eq!(e.line, 1);
    let e = parse_str("t.trace", "mcxt-trace 1\r\n").unwrap_err();
    assert_eq!(e.line, 1);
    let e = parse_str("t.trace", "# comment first\nmcxt-trace 1\n").unwrap_err();
    assert_eq!(e.line, 1);
    let e = parse_str("t.trace", "mcxt-trace 1").unwrap_err();
    assert_eq!((e.line, e.reason.as_str()), (1, "missing final newline"));
}

#[test]
fn lines() {
    fails(&format!("{TOP}A 1 1 8 -"), 3, "missing final newline");
    fails(&format!("{TOP}# no newline"), 3, "missing final newline");
    fails(&format!("{TOP}\n"), 3, "empty line");
    fails(&format!("{TOP}Q 1\n"), 3, "unknown op \"Q 1\"");
    fails(&format!("{TOP}a 1 1 8 -\n"), 3, "unknown op");
    fails(&format!("{TOP}Ax 1 1 8 -\n"), 3, "unknown op");
    fails(&format!("{TOP}Cx 2 - aset 0 0 0 n\n"), 3, "unknown op");
    fails(&format!("{TOP} A 1 1 8 -\n"), 3, "unknown op");
    fails(&format!("{TOP}A 1 1 8 -\r\n"), 3, "bad A flags");
    fails(&format!("{TOP}X 1\r\n"), 3, "bad context id");
    fails(&format!("{TOP}A 1 1  8 -\n"), 3, "bad size \"\"");
    fails(&format!("{TOP}A 1 1 8 - \n"), 3, "bad align \"\"");
    fails(&format!("{TOP}A 1 1 8\t-\n"), 3, "A needs 4 or 5 fields");
    // comments may appear anywhere, and contain anything
    let t = ok(&format!("#\n# a b  c\n{TOP}# x\tz \u{e9}\n"));
    assert_eq!(t.comments, vec!["", " a b  c", " x\tz \u{e9}"]);
    assert_eq!(t.stats.comments, 3);
}

#[test]
fn numbers() {
    fails(&format!("{TOP}A 1 1 -1 -\n"), 3, "bad size \"-1\"");
    fails(&format!("{TOP}A 1 1 +1 -\n"), 3, "bad size \"+1\"");
    fails(&format!("{TOP}A 1 1 08 -\n"), 3, "bad size \"08\"");
    fails(&format!("{TOP}A 1 1 00 -\n"), 3, "bad size \"00\"");
    fails(&format!("{TOP}A 1 1 1e3 -\n"), 3, "bad size \"1e3\"");
    fails(&format!("{TOP}A 1 1 \u{664} -\n"), 3, "bad size");
    fails(&format!("{TOP}A 01 1 8 -\n"), 3, "bad chunk id \"01\"");
    fails(&format!("{TOP}A 1 x 8 -\n"), 3, "bad context id \"x\"");
    fails(
        &format!("{TOP}A 1 1 18446744073709551616 h\n"),
        3,
        "size 18446744073709551616 does not fit in 64 bits",
    );
    fails("C 1 - aset 0 0 99999999999999999999 x\n", 2, "p3 999");
    fails("C 1 - aset 0 x 0 x\n", 2, "bad p2 \"x\"");
    fails("C 1 - aset - 0 0 x\n", 2, "bad p1 \"-\"");
    // the largest sizes that fit are fine (with h)
    let t = ok(&format!(
        "{TOP}A 1 1 18446744073709551615 h\nR 1 18446744073709551615 hz\n"
    ));
    assert_eq!(t.stats.bytes_requested, u128::from(u64::MAX));
    assert_eq!(t.stats.max_live_bytes, u128::from(u64::MAX));
    assert_eq!(t.stats.size_histogram[65], 1);
    // ids near and above u64::MAX
    fails(&format!("{TOP}F 18446744073709551615\n"), 3, "not live");
    fails(&format!("{TOP}F 18446744073709551616\n"), 3, "not live");
    fails(&format!("{TOP}F 4294967296\n"), 3, "not live");
    fails(
        &format!("{TOP}X 18446744073709551616\n"),
        3,
        "not a live context",
    );
    fails(
        "C 18446744073709551616 - aset 0 0 0 x\n",
        2,
        "context id 18446744073709551616, expected 1",
    );
    fails(
        &format!("{TOP}A 18446744073709551617 1 8 -\n"),
        3,
        "chunk id 18446744073709551617, expected 1",
    );
}

#[test]
fn create() {
    fails("C 1 - aset 0 0 0\n", 2, "C needs 7 fields");
    fails("C 1 - aset 0 0 0 \n", 2, "C needs 7 fields");
    fails("C\n", 2, "C needs 7 fields");
    fails("C 2 - aset 0 0 0 x\n", 2, "context id 2, expected 1");
    fails("C 0 - aset 0 0 0 x\n", 2, "context id 0, expected 1");
    fails(
        &format!("{TOP}C 1 - aset 0 0 0 again\n"),
        3,
        "context id 1, expected 2",
    );
    fails(
        &format!("{TOP}C 3 - aset 0 0 0 skip\n"),
        3,
        "context id 3, expected 2",
    );
    fails(
        "C 1 1 aset 0 0 0 x\n",
        2,
        "parent 1 is not a live context (never created)",
    );
    fails(
        &format!("{TOP}C 2 5 aset 0 0 0 x\n"),
        3,
        "parent 5 is not a live context",
    );
    fails(
        &format!("{TOP}D 1\nC 2 1 aset 0 0 0 x\n"),
        4,
        "parent 1 is not a live context (deleted)",
    );
    fails("C 1 - asset 0 0 0 x\n", 2, "bad kind \"asset\"");
    fails("C 1 - Slab 8192 64 0 x\n", 2, "bad kind");
    fails("C 1 - slab 8192 64 1 x\n", 2, "slab p3 must be 0");
    fails("C 1 - slab 8192 0 0 x\n", 2, "slab chunkSize (p2) is 0");
    // names: rest of the line, may contain spaces (even leading ones)
    let t = ok("C 1 - aset 0 8192 8388608 Top Memory  Context\nC 2 1 bump 0 8192 8192  lead\n");
    assert_eq!(t.creates[0].name, "Top Memory  Context");
    assert_eq!(t.creates[1].name, " lead");
    assert_eq!(t.creates[1].kind, ContextKind::Bump);
    assert_eq!(
        (t.creates[0].p1, t.creates[0].p2, t.creates[0].p3),
        (0, 8192, 8388608)
    );
}

#[test]
fn alloc() {
    fails(&format!("{TOP}A 1 1 8\n"), 3, "A needs 4 or 5 fields");
    fails(&format!("{TOP}A 1 1 8 - 8 8\n"), 3, "A needs 4 or 5 fields");
    fails(&format!("{TOP}A 2 1 8 -\n"), 3, "chunk id 2, expected 1");
    fails(
        &format!("{TOP}A 1 1 8 -\nA 1 1 8 -\n"),
        4,
        "chunk id 1, expected 2",
    );
    fails(
        &format!("{TOP}A 1 1 8 -\nF 1\nA 1 1 8 -\n"),
        5,
        "chunk id 1, expected 2",
    );
    fails(
        &format!("{TOP}A 1 2 8 -\n"),
        3,
        "context 2 is not a live context (never created)",
    );
    fails(
        &format!("{TOP}A 1 0 8 -\n"),
        3,
        "context 0 is not a live context",
    );
    fails(
        &format!("{TOP}D 1\nA 1 1 8 -\n"),
        4,
        "context 1 is not a live context (deleted)",
    );
    // flags
    for bad in ["", "x", "zz", "Z", "-z", "z-", "--", "zhnz", "H"] {
        fails(&format!("{TOP}A 1 1 8 {bad}\n"), 3, "bad A flags");
    }
    let t = ok(&format!(
        "{TOP}A 1 1 8 z\nA 2 1 8 h\nA 3 1 8 n\nA 4 1 8 nhz\nA 5 1 8 -\nA 6 1 8 hz\n"
    ));
    let fl: Vec<Flags> = t
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::Alloc { flags, .. } => Some(*flags),
            _ => None,
        })
        .collect();
    assert_eq!(
        fl,
        vec![
            Flags::ZERO,
            Flags::HUGE,
            Flags::NO_OOM,
            Flags::ZERO | Flags::HUGE | Flags::NO_OOM,
            Flags::EMPTY,
            Flags::ZERO | Flags::HUGE
        ]
    );
    assert_eq!(
        (t.stats.flag_zero, t.stats.flag_huge, t.stats.flag_no_oom),
        (3, 3, 2)
    );
    // huge sizes need h
    fails(
        &format!("{TOP}A 1 1 1073741824 -\n"),
        3,
        "A of 1073741824 bytes without the h flag",
    );
    fails(
        &format!("{TOP}A 1 1 1073741824 zn\n"),
        3,
        "without the h flag",
    );
    ok(&format!(
        "{TOP}A 1 1 1073741823 -\nA 2 1 1073741824 h\nA 3 1 0 -\n"
    ));
    // align
    fails(
        &format!("{TOP}A 1 1 8 - 0\n"),
        3,
        "align 0 is not a power of two",
    );
    fails(
        &format!("{TOP}A 1 1 8 - 3\n"),
        3,
        "align 3 is not a power of two",
    );
    fails(
        &format!("{TOP}A 1 1 8 - 96\n"),
        3,
        "align 96 is not a power of two",
    );
    fails(&format!("{TOP}A 1 1 8 - -\n"), 3, "bad align");
    fails(&format!("{TOP}A 1 1 8 - 4294967296\n"), 3, "not supported");
    let t = ok(&format!(
        "{TOP}A 1 1 8 - 1\nA 2 1 8 - 4096\nA 3 1 8 - 2147483648\n"
    ));
    assert!(matches!(t.ops[2], Op::Alloc { align: 4096, .. }));
    assert!(matches!(
        t.ops[3],
        Op::Alloc {
            align: 2147483648,
            ..
        }
    ));
    assert_eq!(t.stats.aligned_allocs, 3);
}

#[test]
fn slab() {
    let slab = "C 1 - slab 8192 64 0 s\n";
    ok(&format!("{slab}A 1 1 64 -\nR 1 64\nR 1 64 z\nF 1\n"));
    fails(
        &format!("{slab}A 1 1 63 -\n"),
        3,
        "slab allocation of 63, chunkSize is 64",
    );
    fails(&format!("{slab}A 1 1 0 -\n"), 3, "slab allocation of 0");
    fails(
        &format!("{slab}A 1 1 64 - 64\n"),
        3,
        "aligned allocation in a slab context",
    );
    fails(
        &format!("{slab}A 1 1 64 -\nR 1 65\n"),
        4,
        "slab repalloc to 65, chunkSize is 64",
    );
}

#[test]
fn bump() {
    let bump = "C 1 - bump 0 8192 8388608 b\n";
    ok(&format!(
        "{bump}A 1 1 64 -\nA 2 1 8 z 128\nX 1\nA 3 1 1 -\nO 1\nD 1\n"
    ));
    fails(
        &format!("{bump}A 1 1 64 -\nF 1\n"),
        4,
        "F of a chunk in bump context 1",
    );
    fails(
        &format!("{bump}A 1 1 64 -\nR 1 128\n"),
        4,
        "R of a chunk in bump context 1",
    );
    fails(
        &format!(
            "{TOP}{}",
            "C 2 1 bump 0 8192 8192 b\nA 1 1 8 -\nA 2 2 8 -\nF 1\nF 2\n"
        ),
        7,
        "F of a chunk in bump context 2",
    );
}

#[test]
fn free_and_realloc() {
    fails(
        &format!("{TOP}F 1\n"),
        3,
        "chunk 1 is not live (never allocated)",
    );
    fails(
        &format!("{TOP}F 0\n"),
        3,
        "chunk 0 is not live (never allocated)",
    );
    fails(&format!("{TOP}F\n"), 3, "F needs 1 field");
    fails(&format!("{TOP}A 1 1 8 -\nF 1 1\n"), 4, "F needs 1 field");
    fails(
        &format!("{TOP}A 1 1 8 -\nF 1\nF 1\n"),
        5,
        "chunk 1 is not live (freed by F)",
    );
    fails(
        &format!("{TOP}A 1 1 8 -\nF 1\nR 1 8\n"),
        5,
        "chunk 1 is not live (freed by F)",
    );
    fails(&format!("{TOP}F x\n"), 3, "bad chunk id \"x\"");
    fails(
        &format!("{TOP}A 1 1 8 -\nR 1\n"),
        4,
        "R needs 2 or 3 fields",
    );
    fails(
        &format!("{TOP}A 1 1 8 -\nR 1 8 h 8\n"),
        4,
        "R needs 2 or 3 fields",
    );
    fails(
        &format!("{TOP}A 1 1 8 -\nR 1 8 q\n"),
        4,
        "bad R flags \"q\"",
    );
    fails(&format!("{TOP}A 1 1 8 -\nR 1 8 \n"), 4, "bad R flags \"\"");
    fails(
        &format!("{TOP}A 1 1 8 -\nR 1 1073741824\n"),
        4,
        "R of 1073741824 bytes without the h flag",
    );
    fails(
        &format!("{TOP}A 1 1 8 -\nR 1 1073741824 -\n"),
        4,
        "R of 1073741824 bytes without the h flag",
    );
    fails(
        &format!("{TOP}A 1 1 8 -\nR 2 8\n"),
        4,
        "chunk 2 is not live (never allocated)",
    );
    let t = ok(&format!(
        "{TOP}A 1 1 8 -\nR 1 1073741824 h\nR 1 16 -\nR 1 0\nR 1 32 n\nF 1\n"
    ));
    assert_eq!(
        t.ops[2],
        Op::Realloc {
            chunk: 0,
            size: 1073741824,
            flags: Flags::HUGE
        }
    );
    assert_eq!(
        t.ops[4],
        Op::Realloc {
            chunk: 0,
            size: 0,
            flags: Flags::EMPTY
        }
    );
    assert_eq!(t.stats.max_live_bytes, 1073741824);
    assert_eq!(t.stats.bytes_repalloc, 1073741824 + 16 + 32);
    assert_eq!(t.stats.live_bytes_at_end, 0);
}

/// A chunk dies with every kind of reset or delete of its context or of an
/// ancestor, and never appears again.
#[test]
fn implicit_chunk_death() {
    let tree = "C 1 - aset 0 0 0 top\nC 2 1 aset 0 0 0 mid\nC 3 2 generation 0 0 0 leaf\n\
                A 1 1 8 -\nA 2 2 8 -\nA 3 3 8 -\n";
    // line numbers: header 1, tree 2..=7, the op at 8, the use at 9
    for (op, dead, msg) in [
        (
            "X 1",
            "F 1",
            "chunk 1 is not live (died with a reset or delete",
        ),
        ("O 1", "F 1", "chunk 1 is not live (died"),
        ("X 1", "F 2", "chunk 2 is not live (died"),
        ("X 1", "R 3 1", "chunk 3 is not live (died"),
        ("X 2", "F 3", "chunk 3 is not live (died"),
        ("H 1", "F 2", "chunk 2 is not live (died"),
        ("H 1", "F 3", "chunk 3 is not live (died"),
        ("H 2", "F 3", "chunk 3 is not live (died"),
        ("D 1", "F 3", "chunk 3 is not live (died"),
        ("D 2", "F 2", "chunk 2 is not live (died"),
        ("D 2", "F 3", "chunk 3 is not live (died"),
        ("D 3", "F 3", "chunk 3 is not live (died"),
        ("O 3", "F 3", "chunk 3 is not live (died"),
    ] {
        fails(&format!("{tree}{op}\n{dead}\n"), 9, msg);
    }
    // and what survives
    for (op, alive) in [
        ("O 1", "F 2"), // children untouched by O
        ("O 1", "F 3"),
        ("H 1", "F 1"), // H keeps the context's own chunks
        ("X 2", "F 1"), // siblings / ancestors untouched
        ("D 3", "F 2"),
        ("X 3", "F 2"),
        ("O 2", "F 3"),
    ] {
        ok(&format!("{tree}{op}\n{alive}\n"));
    }
}

/// A context dies with D, or with H / X / D of an ancestor, and its id
/// never appears again.
#[test]
fn context_death() {
    let tree = "C 1 - aset 0 0 0 top\nC 2 1 aset 0 0 0 mid\nC 3 2 slab 1024 16 0 leaf\nC 4 - bump 0 0 0 root2\n";
    // header 1, tree 2..=5, op 6, use 7
    for (op, dead, msg) in [
        ("D 1", "X 1", "context 1 is not a live context (deleted)"),
        ("D 1", "O 2", "context 2 is not a live context (deleted)"),
        ("D 1", "H 3", "context 3 is not a live context (deleted)"),
        ("X 1", "D 2", "context 2 is not a live context (deleted)"),
        (
            "X 1",
            "A 1 3 16 -",
            "context 3 is not a live context (deleted)",
        ),
        ("H 1", "P 2 -", "context 2 is not a live context (deleted)"),
        ("H 2", "P 4 3", "parent 3 is not a live context (deleted)"),
        (
            "D 2",
            "C 5 3 aset 0 0 0 x",
            "parent 3 is not a live context (deleted)",
        ),
        ("D 4", "D 4", "context 4 is not a live context (deleted)"),
    ] {
        fails(&format!("{tree}{op}\n{dead}\n"), 7, msg);
    }
    for (op, alive) in [
        ("O 1", "D 3"),
        ("X 2", "X 1"),
        ("H 2", "D 2"),
        ("D 3", "X 2"),
        ("D 1", "D 4"),
        ("X 1", "C 5 1 aset 0 0 0 again"),
    ] {
        ok(&format!("{tree}{op}\n{alive}\n"));
    }
    for op in ["X", "O", "H", "D"] {
        fails(&format!("{tree}{op}\n"), 6, &format!("{op} needs 1 field"));
        fails(
            &format!("{tree}{op} 1 2\n"),
            6,
            &format!("{op} needs 1 field"),
        );
        fails(
            &format!("{tree}{op} 9\n"),
            6,
            "context 9 is not a live context (never created)",
        );
    }
}

#[test]
fn set_parent() {
    let tree = "C 1 - aset 0 0 0 top\nC 2 1 aset 0 0 0 mid\nC 3 2 aset 0 0 0 leaf\nC 4 - aset 0 0 0 root2\n";
    // header 1, tree 2..=5, op 6
    fails(&format!("{tree}P 1 1\n"), 6, "P would create a cycle");
    fails(
        &format!("{tree}P 1 3\n"),
        6,
        "P would create a cycle: context 3 is 1 or one of its descendants",
    );
    fails(&format!("{tree}P 2 3\n"), 6, "P would create a cycle");
    fails(&format!("{tree}P 1\n"), 6, "P needs 2 fields");
    fails(&format!("{tree}P 1 - -\n"), 6, "P needs 2 fields");
    fails(
        &format!("{tree}P 9 -\n"),
        6,
        "context 9 is not a live context",
    );
    fails(
        &format!("{tree}P 1 9\n"),
        6,
        "parent 9 is not a live context",
    );
    fails(&format!("{tree}P 1 x\n"), 6, "bad parent id \"x\"");
    // moving 3 under 4: deleting its old ancestors no longer kills it,
    // deleting its new one does
    let t = ok(&format!("{tree}A 1 3 8 -\nP 3 4\nD 1\nF 1\nX 3\n"));
    assert_eq!(
        t.ops[5],
        Op::SetParent {
            ctx: 2,
            parent: Some(3)
        }
    );
    assert_eq!(t.stats.live_contexts_at_end, 2);
    fails(
        &format!("{tree}P 3 4\nD 4\nX 3\n"),
        8,
        "context 3 is not a live context (deleted)",
    );
    fails(
        &format!("{tree}P 3 4\nH 4\nX 3\n"),
        8,
        "context 3 is not a live context (deleted)",
    );
    // detaching makes a root; the old parent's reset spares it
    let t = ok(&format!("{tree}P 2 -\nX 1\nX 3\nP 1 3\n"));
    assert_eq!(
        t.ops[4],
        Op::SetParent {
            ctx: 1,
            parent: None
        }
    );
    // depth: 4 -> 1 -> 2 -> 3 is depth 4
    let t = ok(&format!("{tree}P 1 4\n"));
    assert_eq!(t.stats.max_depth, 4);
    // a cycle through a moved subtree is still seen
    fails(
        &format!("{tree}P 4 3\nP 1 4\n"),
        7,
        "P would create a cycle",
    );
}

#[test]
fn non_utf8() {
    let mut v = b"mcxt-trace 1\nC 1 - aset 0 0 0 ab\xffcd\n".to_vec();
    let e = parse_reader("b", &v[..]).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("not valid UTF-8"), "{e}");
    v = b"mcxt-trace 1\n# \xc3\n".to_vec();
    let e = parse_reader("b", &v[..]).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("comment is not valid UTF-8"), "{e}");
    v = b"mcxt-trace 1\nC 1 - aset 0 0 0 x\nA 1 1 8 \xff\n".to_vec();
    let e = parse_reader("b", &v[..]).unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.reason.contains("bad A flags"), "{e}");
    v = b"mcxt-trace 1\n\xff\n".to_vec();
    let e = parse_reader("b", &v[..]).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(e.reason.contains("unknown op"), "{e}");
}

#[test]
fn line_numbers_count_comments() {
    fails(
        "# a\n# b\nC 1 - aset 0 0 0 x\n# c\nF 1\n",
        6,
        "chunk 1 is not live",
    );
}

#[test]
fn error_display_without_line() {
    let e = mcxt_trace::parse_file(std::path::Path::new("/nonexistent/x.trace.gz")).unwrap_err();
    assert_eq!(e.line, 0);
    assert_eq!(e.file, "/nonexistent/x.trace.gz");
    assert!(
        e.to_string()
            .starts_with("/nonexistent/x.trace.gz: cannot open: "),
        "{e}"
    );
    let boxed: Box<dyn std::error::Error> = Box::new(e);
    assert!(!boxed.to_string().is_empty());
}
