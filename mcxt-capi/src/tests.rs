//! Unit tests: the header's constants against the Rust ones, and the
//! internal entry points called directly.

use super::*;
use crate::symbols::{declared_symbols, SymbolKind};

const HEADER: &str = include_str!("../include/mcxt.h");

/// Evaluates the right-hand side of a `#define` of the header: integers
/// (decimal or hex), `SIZE_MAX`, other macros, `(Size)` casts,
/// parentheses, `*` and `/` (left to right).
fn eval(expr: &str) -> u128 {
    let expr = expr.replace("(Size)", "");
    let tokens: Vec<String> = expr
        .replace(['(', ')'], " ")
        .replace('*', " * ")
        .replace('/', " / ")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let value = |t: &str| -> u128 {
        if let Some(hex) = t.strip_prefix("0x") {
            u128::from_str_radix(hex, 16).unwrap()
        } else if t == "SIZE_MAX" {
            usize::MAX as u128
        } else if t.chars().all(|c| c.is_ascii_digit()) {
            t.parse().unwrap()
        } else {
            eval(&define(t))
        }
    };
    let mut acc = value(&tokens[0]);
    for pair in tokens[1..].chunks(2) {
        let rhs = value(&pair[1]);
        match pair[0].as_str() {
            "*" => acc *= rhs,
            "/" => acc /= rhs,
            op => panic!("operator {op}"),
        }
    }
    acc
}

/// The text of `#define name ...` in the header (continuation lines
/// joined, comment dropped).
fn define(name: &str) -> String {
    let joined = HEADER.replace("\\\n", " ");
    for line in joined.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("#define") && words.next() == Some(name) {
            let text = words.collect::<Vec<_>>().join(" ");
            // Drop a trailing comment.
            return text
                .split("/*")
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
        }
    }
    panic!("#define {name} not found in mcxt.h");
}

fn num(name: &str) -> usize {
    usize::try_from(eval(&define(name))).unwrap()
}

/// The three numbers of an `ALLOCSET_*_SIZES` macro.
fn sizes(name: &str) -> BlockSizes {
    let parts: Vec<usize> = define(name).split(',').map(|m| num(m.trim())).collect();
    assert_eq!(parts.len(), 3, "{name}");
    BlockSizes {
        min_context_size: parts[0],
        init_block_size: parts[1],
        max_block_size: parts[2],
    }
}

#[test]
fn header_constants_match_mcxt() {
    assert_eq!(num("MaxAllocSize"), mcxt_core::MAX_ALLOC_SIZE);
    assert_eq!(num("MaxAllocHugeSize"), mcxt_core::MAX_ALLOC_HUGE_SIZE);
    assert_eq!(num("MCXT_ALLOC_HUGE") as u32, AllocFlags::HUGE.bits());
    assert_eq!(num("MCXT_ALLOC_NO_OOM") as u32, AllocFlags::NO_OOM.bits());
    assert_eq!(num("MCXT_ALLOC_ZERO") as u32, AllocFlags::ZERO.bits());
    assert_eq!(
        num("SLAB_DEFAULT_BLOCK_SIZE"),
        mcxt_core::SLAB_DEFAULT_BLOCK_SIZE
    );
    assert_eq!(
        num("SLAB_LARGE_BLOCK_SIZE"),
        mcxt_core::SLAB_LARGE_BLOCK_SIZE
    );
    assert_eq!(num("ALLOCSET_SEPARATE_THRESHOLD"), 8192);
    assert_eq!(num("MCXT_NO_LIMIT"), usize::MAX);
    assert_eq!(sizes("ALLOCSET_DEFAULT_SIZES"), BlockSizes::DEFAULT);
    assert_eq!(sizes("ALLOCSET_SMALL_SIZES"), BlockSizes::SMALL);
    assert_eq!(sizes("ALLOCSET_START_SMALL_SIZES"), BlockSizes::START_SMALL);
}

#[test]
fn header_declares_the_api() {
    let symbols = declared_symbols(HEADER);
    let functions: Vec<&str> = symbols
        .iter()
        .filter(|(_, k)| *k == SymbolKind::Function)
        .map(|(n, _)| n.as_str())
        .collect();
    let variables: Vec<&str> = symbols
        .iter()
        .filter(|(_, k)| *k == SymbolKind::Variable)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(
        variables,
        ["CurrentMemoryContext", "TopMemoryContext", "ErrorContext"]
    );
    for f in [
        "palloc",
        "psprintf",
        "AllocSetContextCreateInternal",
        "MemoryContextCheck",
        "mcxt_set_error_handler",
        "mcxt_get_error_handler",
    ] {
        assert!(functions.contains(&f), "{f} missing");
    }
    // The inline function is not an exported symbol.
    assert!(!functions.contains(&"MemoryContextSwitchTo"));
    let mut unique = functions.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        functions.len(),
        "a function is declared twice"
    );
}

/// Takes the pending error message, if any.
fn take_error() -> Option<String> {
    let mut buf = [0 as c_char; 256];
    let mut kind = 0;
    // SAFETY: a 256-byte buffer and a local.
    let got = unsafe { mcxt__take_error(buf.as_mut_ptr(), buf.len(), &mut kind) };
    (got == 1).then(|| {
        // SAFETY: NUL-terminated by take_error.
        unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    })
}

#[test]
fn entry_points_report_errors_instead_of_raising() {
    // SAFETY: every handle passed is NULL or a live context created here,
    // every chunk a live chunk of it; the name is a literal.
    unsafe {
        assert!(mcxt__alloc(ptr::null_mut(), 10).is_null());
        let msg = take_error().unwrap();
        assert!(msg.contains("no current memory context"), "{msg}");
        assert!(msg.contains("size 10"), "{msg}");

        let ctx = mcxt__create(
            ptr::null_mut(),
            c"unit".as_ptr(),
            KIND_ALLOC_SET,
            0,
            8192,
            8192 * 1024,
        );
        assert!(!ctx.is_null());
        assert_eq!(take_error(), None);

        assert!(mcxt__alloc(ctx, mcxt_core::MAX_ALLOC_SIZE + 1).is_null());
        let msg = take_error().unwrap();
        assert!(msg.contains("invalid memory alloc request size"), "{msg}");
        assert!(msg.contains("\"unit\""), "{msg}");

        // NO_OOM: NULL and no error record.
        assert_eq!(mcxt__set_limit(ctx, 16 * 1024), 0);
        let no_oom = AllocFlags::NO_OOM.bits() as c_int;
        assert!(mcxt__alloc_extended(ctx, 1 << 20, no_oom).is_null());
        assert_eq!(take_error(), None);
        assert!(mcxt__alloc(ctx, 1 << 20).is_null());
        assert!(take_error().unwrap().contains("memory limit exceeded"));

        assert_eq!(mcxt__free(ptr::null_mut()), -1);
        assert_eq!(take_error().unwrap(), "pfree called with a NULL pointer");

        // Only Bump contexts keep blocks across resets.
        assert_eq!(mcxt__retain_on_reset(ctx, 1 << 20), -1);
        let msg = take_error().unwrap();
        assert!(msg.contains("only Bump contexts"), "{msg}");

        let name = [0xffu8, 0];
        assert!(mcxt__create(ctx, name.as_ptr().cast(), KIND_BUMP, 0, 8192, 8192).is_null());
        assert!(take_error().unwrap().contains("UTF-8"));

        let mut current = ctx;
        let child = mcxt__create(ctx, c"child".as_ptr(), KIND_SLAB, 8192, 64, 0);
        let mut child_var = child;
        let globals: [*mut *mut c_void; 2] = [&mut current, &mut child_var];
        assert_eq!(mcxt__reset(ctx, globals.as_ptr(), 2), 0);
        assert_eq!(current, ctx, "the reset context itself survives");
        assert!(child_var.is_null(), "a deleted child is forgotten");
        assert_eq!(mcxt__delete(ctx, globals.as_ptr(), 2), 0);
        assert!(current.is_null());
        assert_eq!(take_error(), None);
    }
}
