//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mcxt_cli::replay::ValidTrace;

/// The trace shipped with the project.
pub fn shipped_trace_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../traces/pgbench-small.trace.gz")
}

/// The shipped trace, parsed.
pub fn shipped_trace() -> ValidTrace {
    ValidTrace::parse_file(&shipped_trace_path()).expect("the shipped trace parses")
}

/// A small trace using every operation, flag and an alignment.
pub const TINY: &str = "mcxt-trace 1
# every operation at least once
C 1 - aset 0 8192 8388608 TopMemoryContext
C 2 1 aset 0 1024 8192 small child
C 3 2 generation 0 8192 8388608 gen grandchild
C 4 1 slab 8192 64 0 slab
C 5 1 bump 0 8192 8388608 bump
A 1 1 100 z
A 2 2 0 -
A 3 3 5000 h
A 4 4 64 -
A 5 5 30 z
A 6 2 200 - 128
A 7 1 40000 zn 4096
R 1 300
R 6 5000
R 7 10 h
R 2 0
F 4
A 8 3 17 -
O 3
A 9 3 33 -
C 6 - aset 0 8192 8388608 second root
P 2 6
A 10 2 12 -
X 6
C 7 1 aset 8192 8192 8192 another
A 11 7 8 -
D 5
H 1
A 12 1 9000 -
R 12 100000
C 8 - aset 0 8192 8388608 left at the end
A 13 8 1 -
P 8 1
C 9 1 aset 0 8192 8388608 made a root
P 9 -
A 14 9 77 z
";

/// [`TINY`], parsed.
pub fn tiny_trace() -> ValidTrace {
    ValidTrace::parse_str("tiny.trace", TINY).expect("TINY parses")
}
