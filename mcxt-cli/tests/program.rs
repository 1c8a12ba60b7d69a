//! The compiled replay program: it decodes back to exactly the trace's
//! operations, and the replay loop hands every one of them, in order, to
//! the backend.

mod common;

use common::{assert_program_is_the_trace, first_difference};
use mcxt_cli::replay::program::Program;
use mcxt_cli::replay::ValidTrace;
use mcxt_trace::{ContextKind, Flags, Op};

#[test]
fn shipped_trace_program_is_the_trace() {
    let t = common::shipped_trace();
    assert_program_is_the_trace(&t);
    let p = t.program();
    // 8 bytes per operation, and very little escaped (aligned `A`s)
    assert!(
        p.escaped().len() * 1000 < p.len(),
        "{} escaped",
        p.escaped().len()
    );
    assert!(p.heap_bytes() < t.ops.len() * 10);
}

#[test]
fn tiny_trace_program_is_the_trace() {
    assert_program_is_the_trace(&common::tiny_trace());
}

/// Sizes near `u64::MAX` (with `h`), the largest alignment, every flag
/// combination, and sizes on both sides of what fits in a word.
const EXTREME: &str = "mcxt-trace 1
C 1 - aset 0 8192 8388608 top
C 2 1 generation 0 8192 8388608 gen
C 3 1 slab 8192 64 0 slab
C 4 - bump 0 8192 8388608 bump
A 1 1 18446744073709551615 h
A 2 1 18446744073709551614 zhn 2147483648
A 3 2 4294967295 h
A 4 2 4294967296 zh
A 5 1 0 zn 2147483648
A 6 3 64 -
A 7 4 1073741823 zhn
A 8 4 1073741824 h 2
A 9 2 1 n
A 10 2 2 hn
A 11 2 3 zh
R 3 33554431 zhn
R 4 33554432
R 5 18446744073709551615 h
R 9 0
R 10 18446744073709551615 zhn
F 6
O 2
H 1
F 1
A 12 1 7 z 16
X 1
P 4 1
A 13 4 1 -
D 4
C 5 - aset 0 8192 8388608 second
A 14 5 4294967295 zhn
D 5
";

#[test]
fn extreme_trace_program_is_the_trace() {
    let t = ValidTrace::parse_str("extreme.trace", EXTREME).expect("EXTREME parses");
    assert_program_is_the_trace(&t);
    assert!(t.program().escaped().len() >= 10);
}

/// Compiling is exact for any operations, even ones no parsed trace can
/// have: the largest ids, chunk ids out of order, parents and specs at
/// `u32::MAX`.
#[test]
fn any_operations_round_trip() {
    let max = u32::MAX;
    let mut ops = Vec::new();
    for kind in ContextKind::ALL {
        for (ctx, parent, spec) in [
            (max, None, max),
            (0, Some(max), 0),
            (0, None, 0),
            ((1 << 26) - 1, Some(max - 1), (1 << 26) - 1),
            (1 << 26, Some(1), 1 << 26),
            (7, Some(0), 8),
        ] {
            ops.push(Op::Create {
                ctx,
                parent,
                kind,
                spec,
            });
        }
    }
    for (chunk, ctx, size, align) in [
        (0, 0, 0, 0),
        (1, max, u64::MAX, 1 << 31),
        (2, (1 << 28) - 1, (1 << 32) - 1, 0),
        (3, 1 << 28, 1, 0),
        (4, 0, 1 << 32, 0),
        (7, 5, 6, 0), // out of order
        (8, 5, 6, 0), // in order again after it
        (max, max, u64::MAX, 1 << 31),
        (0, 1, 2, 0), // the counter wrapped
        (1, 1, 2, 8),
    ] {
        for bits in 0..8 {
            ops.push(Op::Alloc {
                chunk,
                ctx,
                size,
                flags: Flags::from_bits(bits).unwrap(),
                align,
            });
        }
    }
    for size in [0, (1 << 25) - 1, 1 << 25, u64::MAX] {
        for bits in 0..8 {
            ops.push(Op::Realloc {
                chunk: max,
                size,
                flags: Flags::from_bits(bits).unwrap(),
            });
        }
    }
    for id in [0, 1, max - 1, max] {
        ops.extend([
            Op::Free { chunk: id },
            Op::Reset { ctx: id },
            Op::ResetOnly { ctx: id },
            Op::DeleteChildren { ctx: id },
            Op::Delete { ctx: id },
            Op::SetParent {
                ctx: id,
                parent: Some(max - id),
            },
            Op::SetParent {
                ctx: id,
                parent: None,
            },
        ]);
    }
    let p = Program::compile(&ops);
    assert_eq!(p.len(), ops.len());
    let decoded: Vec<Op> = p.decode().collect();
    assert_eq!(first_difference(&decoded, &ops), None);
    assert_eq!(p.decode().len(), ops.len());
    assert!(Program::compile(&[]).is_empty());
}
