//! Parser and validator of memory-context allocation traces.
//!
//! A trace is the sequence of memory-context operations one PostgreSQL
//! backend performed (`AllocSetContextCreate`, `palloc`, `pfree`,
//! `repalloc`, `MemoryContextReset`, ...), recorded at the level of the
//! public API. Replaying it against an allocator reproduces the allocation
//! pattern of a real database backend.
//!
//! # The format (`mcxt-trace 1`)
//!
//! Files are UTF-8 text, usually gzip-compressed (`NAME.trace.gz`). The
//! first line is `mcxt-trace 1`; lines starting with `#` are comments;
//! every other line is one operation, fields separated by single spaces,
//! every line (the last one too) ends with `\n`:
//!
//! | op  | fields                          | meaning |
//! |-----|---------------------------------|---------|
//! | `C` | `ctx parent kind p1 p2 p3 name` | create context `ctx` under `parent` (`-` = root); `kind` is `aset`, `generation`, `slab` or `bump`; `name` is the rest of the line |
//! | `A` | `chunk ctx size flags [align]`  | allocate `size` bytes in `ctx`, giving chunk `chunk` |
//! | `R` | `chunk size [flags]`            | `repalloc` the chunk |
//! | `F` | `chunk`                         | `pfree` the chunk |
//! | `X` | `ctx`                           | reset: delete every descendant, free every chunk of `ctx` |
//! | `O` | `ctx`                           | reset only: free every chunk of `ctx` |
//! | `H` | `ctx`                           | delete every descendant of `ctx` |
//! | `D` | `ctx`                           | delete `ctx` and every descendant |
//! | `P` | `ctx parent`                    | set the parent (`-` = make it a root) |
//!
//! `flags` is `-` or distinct letters from `z` (zero), `h` (huge allowed),
//! `n` (no OOM error); `align` is a power of two. Context and chunk ids are
//! two separate spaces, handed out from 1 in order of creation and never
//! reused. A chunk dies on `F`, or with a reset or delete of its context or
//! of an ancestor; a context dies on `D`, or with `H`, `X` or `D` of an
//! ancestor; a dead id never appears again. `bump` contexts never see `F`
//! or `R`; `slab` chunks always have exactly the context's chunkSize (`p2`)
//! and no alignment; a size above 1 GiB - 1 needs the `h` flag; `P` may not
//! create a cycle.
//!
//! # The API
//!
//! [`parse_file`], [`parse_reader`] and [`parse_str`] read a whole trace
//! (gzip-compressed or plain, told apart by the gzip magic bytes) into a
//! [`Trace`], checking every rule above on the way, and fail with a
//! [`TraceError`] naming the file, the 1-based line and the reason. The
//! checks are those of the reference validator `trace-check.py`, and
//! [`Trace::stats`] holds the statistics it prints (its `Display` writes
//! the same report).
//!
//! In a [`Trace`], ids are *dense and 0-based* ([`CtxId`], [`ChunkId`]:
//! trace id 1 is 0), so a replayer can keep its per-context and per-chunk
//! state in `Vec`s of length [`Trace::n_contexts`] and [`Trace::n_chunks`].
//! Each line becomes one [`Op`] (24 bytes, `Copy`); creation parameters
//! and names are in [`Trace::creates`].
//!
//! ```
//! use mcxt_trace::{parse_str, ContextKind, Op};
//!
//! let text = "mcxt-trace 1\n# a tiny trace\n\
//!             C 1 - aset 0 8192 8388608 TopMemoryContext\n\
//!             C 2 1 slab 8192 64 0 my slab\n\
//!             A 1 1 100 z\n\
//!             A 2 2 64 -\n\
//!             R 1 200\n\
//!             F 2\n\
//!             X 1\n";
//! let trace = parse_str("tiny.trace", text).unwrap();
//! assert_eq!(trace.ops.len(), 7);
//! assert_eq!(trace.n_contexts, 2);
//! assert_eq!(trace.creates[1].name, "my slab");
//! assert_eq!(
//!     trace.ops[1],
//!     Op::Create { ctx: 1, parent: Some(0), kind: ContextKind::Slab, spec: 1 }
//! );
//! // X 1 deleted context 2 and killed chunk 1, which is dead from then on
//! assert_eq!(trace.stats.max_depth, 2);
//! assert_eq!(trace.stats.chunks_died_with_context, 1);
//! assert_eq!(trace.stats.live_contexts_at_end, 1);
//!
//! let err = parse_str("bad.trace", "mcxt-trace 1\nC 1 - aset 0 0 0 top\nF 1\n").unwrap_err();
//! assert_eq!(err.to_string(), "bad.trace:3: chunk 1 is not live (never allocated)");
//! ```
//!
//! # Differences from `trace-check.py`
//!
//! The rules are the same; a few limits of this representation make the
//! parser stricter on inputs no real trace contains:
//!
//! - the operation must be a field of exactly one letter (`trace-check.py`
//!   looks only at the first character, so it accepts `Ax 1 1 8 -`);
//! - sizes and `p1`..`p3` must fit in `u64`; `align` may be at most 2^31;
//!   a trace may have at most 2^32 - 3 contexts and as many chunks;
//! - a line may be at most 16 MiB long;
//! - plain (uncompressed) text is accepted as well as gzip.
//!
//! Parsing never panics, whatever the input (this is fuzzed and
//! property-tested).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::Path;

use flate2::bufread::MultiGzDecoder;

mod parser;
mod stats;
mod types;

pub use stats::{KindCounts, OpCounts, TraceStats, SIZE_BUCKETS};
pub use types::{ChunkId, ContextKind, CreateSpec, CtxId, Flags, Op, TraceError};

/// The header line of every trace, without its newline.
pub const HEADER: &str = "mcxt-trace 1";

/// Largest request size (in bytes) allowed without the `h` flag: 1 GiB - 1
/// (PostgreSQL's `MaxAllocSize`).
pub const MAX_ALLOC_SIZE: u64 = parser::MAX_ALLOC;

/// A parsed, validated trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The trace's name: the file name for [`parse_file`] (e.g.
    /// `pgbench-small.trace.gz`), the given name otherwise.
    pub name: String,
    /// Every operation line, in order.
    pub ops: Vec<Op>,
    /// Creation parameters, indexed by [`Op::Create`]'s `spec` (which, in a
    /// parsed trace, equals its `ctx`).
    pub creates: Vec<CreateSpec>,
    /// Number of contexts created: every [`CtxId`] is below it.
    pub n_contexts: u32,
    /// Number of chunks allocated: every [`ChunkId`] is below it.
    pub n_chunks: u32,
    /// The comment lines, each without its leading `#` (so usually starting
    /// with a space), in order. Their positions among the operations are
    /// not kept.
    pub comments: Vec<String>,
    /// Counts and peaks gathered while validating.
    pub stats: TraceStats,
}

impl Trace {
    /// A `Display` of one operation as its trace line (1-based ids, no
    /// newline). For [`Op::Create`] the parameters and name come from
    /// [`Trace::creates`] (if `spec` is out of range: zeros and `?`).
    pub fn display_op<'a>(&'a self, op: &'a Op) -> OpLine<'a> {
        OpLine { trace: self, op }
    }

    /// Writes the trace in the text format (not compressed): the header,
    /// every comment, then every operation. Parsing the output gives back
    /// the same operations, creation parameters and comments.
    pub fn write_to<W: Write>(&self, mut w: W) -> io::Result<()> {
        writeln!(w, "{HEADER}")?;
        for c in &self.comments {
            writeln!(w, "#{c}")?;
        }
        for op in &self.ops {
            writeln!(w, "{}", self.display_op(op))?;
        }
        w.flush()
    }
}

/// One operation written as a trace line; see [`Trace::display_op`].
pub struct OpLine<'a> {
    trace: &'a Trace,
    op: &'a Op,
}

/// 1-based id of a dense id.
fn ext(id: u32) -> u64 {
    u64::from(id) + 1
}

struct Parent(Option<CtxId>);

impl fmt::Display for Parent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, "{}", ext(p)),
            None => f.write_str("-"),
        }
    }
}

impl fmt::Display for OpLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self.op {
            Op::Create {
                ctx,
                parent,
                kind,
                spec,
            } => {
                let (p1, p2, p3, name) = match self.trace.creates.get(spec as usize) {
                    Some(s) => (s.p1, s.p2, s.p3, s.name.as_str()),
                    None => (0, 0, 0, "?"),
                };
                write!(
                    f,
                    "C {} {} {} {p1} {p2} {p3} {name}",
                    ext(ctx),
                    Parent(parent),
                    kind
                )
            }
            Op::Alloc {
                chunk,
                ctx,
                size,
                flags,
                align,
            } => {
                write!(f, "A {} {} {size} {flags}", ext(chunk), ext(ctx))?;
                if align != 0 {
                    write!(f, " {align}")?;
                }
                Ok(())
            }
            Op::Realloc { chunk, size, flags } => {
                write!(f, "R {} {size}", ext(chunk))?;
                if !flags.is_empty() {
                    write!(f, " {flags}")?;
                }
                Ok(())
            }
            Op::Free { chunk } => write!(f, "F {}", ext(chunk)),
            Op::Reset { ctx } => write!(f, "X {}", ext(ctx)),
            Op::ResetOnly { ctx } => write!(f, "O {}", ext(ctx)),
            Op::DeleteChildren { ctx } => write!(f, "H {}", ext(ctx)),
            Op::Delete { ctx } => write!(f, "D {}", ext(ctx)),
            Op::SetParent { ctx, parent } => write!(f, "P {} {}", ext(ctx), Parent(parent)),
        }
    }
}

/// Buffer size for reading files and decompressed data.
const BUF_SIZE: usize = 256 * 1024;

/// Parses and validates the trace file at `path`: gzip-compressed (any
/// file starting with the gzip magic bytes `1f 8b`) or plain text.
///
/// [`Trace::name`] is the file name of `path`; errors name `path` as
/// given. An error opening the file has line 0.
pub fn parse_file(path: &Path) -> Result<Trace, TraceError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|e| TraceError {
        file: shown.clone(),
        line: 0,
        reason: format!("cannot open: {e}"),
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| shown.clone());
    let r = BufReader::with_capacity(BUF_SIZE, file);
    parse_any(&name, &shown, r)
}

/// Parses and validates a trace read from `r`, gzip-compressed (detected
/// by the magic bytes `1f 8b`, possibly several concatenated gzip members)
/// or plain text. `name` becomes [`Trace::name`] and [`TraceError::file`].
pub fn parse_reader<R: BufRead>(name: &str, r: R) -> Result<Trace, TraceError> {
    parse_any(name, name, r)
}

/// Parses and validates a trace held in a string.
pub fn parse_str(name: &str, text: &str) -> Result<Trace, TraceError> {
    parse_any(name, name, text.as_bytes())
}

fn parse_any<R: BufRead>(name: &str, err_name: &str, mut r: R) -> Result<Trace, TraceError> {
    // Peek at the first two bytes for the gzip magic.
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < magic.len() {
        match r.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(TraceError {
                    file: err_name.to_owned(),
                    line: 1,
                    reason: format!("read error: {e}"),
                })
            }
        }
    }
    let head = &magic[..got];
    let input = head.chain(r);
    let mut p = parser::Parser::new(err_name);
    if head == [0x1f, 0x8b] {
        let gz = MultiGzDecoder::new(input);
        p.run(BufReader::with_capacity(BUF_SIZE, gz))?;
    } else {
        p.run(input)?;
    }
    let mut t = p.finish();
    t.name = name.to_owned();
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_is_small() {
        assert!(std::mem::size_of::<Op>() <= 24);
        assert_eq!(std::mem::size_of::<Op>(), 24);
    }
}
