//! `MemoryContextCheck`: mcxt's consistency walk, reported as PostgreSQL
//! reports it (one WARNING per problem, then on).
//!
//! The walk itself is [`MemoryContext::check`]: links, byte accounting,
//! every block and chunk header, and, when the library is built with the
//! `checking` feature, every chunk's sentinels and clobber pattern.

use core::fmt::Write;
use mcxt_core::raw::MemoryContext;

/// Checks the tree under `root`; returns one
/// `WARNING:  problem in memory context "<name>": ...` line per problem
/// (empty when all is well).
///
/// # Safety
/// `root` must be alive, and the tree must not change meanwhile.
pub(crate) unsafe fn check_tree(root: MemoryContext) -> String {
    // SAFETY: caller contract.
    let summary = unsafe { root.check() };
    let mut report = String::new();
    for problem in &summary.problems {
        let _ = writeln!(report, "WARNING:  {problem}");
    }
    report
}
