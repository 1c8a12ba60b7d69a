//! `--check`: memory-content verification.
//!
//! Every chunk is filled, on allocation, with a byte pattern derived from
//! its id ([`fill`]); `z` allocations are first verified to be zeroed.
//! The pattern is verified ([`first_mismatch`]) when the chunk is freed,
//! before and after a reallocation (after: up to the smaller of the old
//! and new sizes, then the chunk is refilled at its new size), and for
//! every chunk that dies with a reset or delete (`X`, `O`, `H`, `D`, and
//! the final delete of what is left). Aligned chunks are verified to be
//! aligned after allocation and reallocation. An overlap between two live
//! chunks, a chunk handed out twice, an unzeroed `palloc0`, a lost byte in
//! `repalloc` all show up as mismatches.
//!
//! The check runs as its own, untimed replay ([`crate::bench`]): the
//! timed numbers never include it.
//!
//! The verification is in [`crate::replay::checked`], a backend wrapping
//! the one under test; this module has the patterns and the report.

use std::fmt;

use mcxt_trace::{ChunkId, Trace};

/// How many error messages a [`CheckReport`] keeps (all are counted).
pub const MAX_MESSAGES: usize = 10;

/// Pattern parameters of a chunk: byte `i` is `start + i * step` (mod 256),
/// `step` odd, both mixed from the id so neighbours differ.
#[inline(always)]
fn pattern(chunk: ChunkId) -> (u8, u8) {
    let h = (chunk as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((h >> 56) as u8, ((h >> 48) as u8) | 1)
}

/// Fills `buf` (the first bytes of chunk `chunk`) with its pattern.
#[inline]
pub fn fill(chunk: ChunkId, buf: &mut [u8]) {
    let (start, step) = pattern(chunk);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = start.wrapping_add((i as u8).wrapping_mul(step));
    }
}

/// The first byte of `buf` that differs from chunk `chunk`'s pattern, as
/// (offset, found, expected).
#[inline]
pub fn first_mismatch(chunk: ChunkId, buf: &[u8]) -> Option<(usize, u8, u8)> {
    let (start, step) = pattern(chunk);
    let expected = |i: usize| start.wrapping_add((i as u8).wrapping_mul(step));
    // A branch-free pass first (vectorises), the search only on failure.
    let diff = buf
        .iter()
        .enumerate()
        .fold(0u8, |acc, (i, &b)| acc | (b ^ expected(i)));
    if diff == 0 {
        return None;
    }
    buf.iter()
        .enumerate()
        .find(|&(i, &b)| b != expected(i))
        .map(|(i, &b)| (i, b, expected(i)))
}

/// The first non-zero byte of `buf`, as (offset, found).
#[inline]
pub fn first_nonzero(buf: &[u8]) -> Option<(usize, u8)> {
    if buf.iter().fold(0u8, |acc, &b| acc | b) == 0 {
        return None;
    }
    buf.iter()
        .enumerate()
        .find(|&(_, &b)| b != 0)
        .map(|(i, &b)| (i, b))
}

/// One detected problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckError {
    /// 0-based index of the operation during which it was found (the
    /// trace's operation number minus one); `None` for the final delete
    /// after the last operation.
    pub op: Option<usize>,
    /// What was wrong.
    pub what: String,
}

/// The outcome of a checked replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Number of errors found.
    pub errors: u64,
    /// The first [`MAX_MESSAGES`] errors.
    pub first: Vec<CheckError>,
    /// Chunks whose contents were verified at least once.
    pub chunks_verified: u64,
    /// Bytes verified in all (a byte verified twice counts twice).
    pub bytes_verified: u64,
}

impl CheckReport {
    /// Records an error found during operation `op`.
    pub fn error(&mut self, op: Option<usize>, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first.len() < MAX_MESSAGES {
            self.first.push(CheckError { op, what: what() });
        }
    }

    /// Whether no error was found.
    pub fn ok(&self) -> bool {
        self.errors == 0
    }

    /// A `Display` of the report, naming the operations of `trace` (with
    /// their trace lines).
    pub fn display<'a>(&'a self, trace: &'a Trace) -> CheckDisplay<'a> {
        CheckDisplay {
            report: self,
            trace,
        }
    }
}

/// See [`CheckReport::display`].
pub struct CheckDisplay<'a> {
    report: &'a CheckReport,
    trace: &'a Trace,
}

impl fmt::Display for CheckDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.report;
        if r.ok() {
            return write!(
                f,
                "ok ({} chunk verifications, {} bytes)",
                r.chunks_verified, r.bytes_verified
            );
        }
        write!(f, "{} errors", r.errors)?;
        for e in &r.first {
            match e.op {
                Some(i) => match self.trace.ops.get(i) {
                    Some(op) => write!(
                        f,
                        "\n  op {} `{}`: {}",
                        i + 1,
                        self.trace.display_op(op),
                        e.what
                    )?,
                    None => write!(f, "\n  op {}: {}", i + 1, e.what)?,
                },
                None => write!(f, "\n  final delete: {}", e.what)?,
            }
        }
        if r.errors > r.first.len() as u64 {
            write!(f, "\n  ... and {} more", r.errors - r.first.len() as u64)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let mut a = vec![0u8; 300];
        fill(7, &mut a);
        assert_eq!(first_mismatch(7, &a), None);
        assert!(first_mismatch(8, &a).is_some());
        a[299] ^= 1;
        assert_eq!(first_mismatch(7, &a).map(|m| m.0), Some(299));
        assert_eq!(first_nonzero(&[0, 0, 3]), Some((2, 3)));
        assert_eq!(first_nonzero(&[]), None);
    }
}
