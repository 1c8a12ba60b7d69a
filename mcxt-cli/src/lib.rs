//! The engine of the `mcxt` command-line tool: replaying PostgreSQL
//! memory-context traces (`mcxt-trace` format) against mcxt, glibc malloc,
//! mimalloc and a null allocator; timing, peak memory, content checks,
//! context statistics and plots.
//!
//! * [`replay`]: the backends and the replay loop ([`replay::Replay`]),
//!   which reads a trace compiled into a compact [`replay::program`].
//!   All `unsafe` code is there, in the backend modules and the loop.
//! * [`bench`](mod@bench): timed replays + peak pass + optional check, per (trace,
//!   allocator); [`report`] turns them into rows (JSON), [`table`] into
//!   the text table.
//! * [`peak`]: what "peak bytes held from the system" means for each
//!   allocator, and how it is sampled.
//! * [`check`]: the `--check` patterns and report.
//! * [`stats`]: `mcxt stats --at N|peak`.
//! * [`plot`]: `mcxt plot`.
//! * [`cli`]: the command line (the `mcxt` binary only calls
//!   [`cli::main_with_args`]).
//!
//! # The command line
//!
//! ```text
//! mcxt                                   # replay traces/pgbench-small.trace.gz, all allocators
//! mcxt replay TRACE... [--allocator mcxt|malloc|mimalloc|null|all[,..]]
//!                      [--check] [--json] [--repeat N]
//! mcxt stats TRACE [--at N|peak]         # MemoryContextStats of every root after N ops
//! mcxt plot TRACE -o FILE.svg            # memory over time + contexts at mcxt's peak
//! ```
//!
//! `mcxt replay --help` explains every reported number; [`peak`] and
//! [`check`] have the details.
//!
//! # The library
//!
//! ```no_run
//! use mcxt_cli::bench::{measure, BenchOptions};
//! use mcxt_cli::replay::{Allocator, ValidTrace};
//!
//! let trace = ValidTrace::parse_file("traces/pgbench-small.trace.gz".as_ref()).unwrap();
//! let m = measure(&trace, Allocator::Mcxt, &BenchOptions::default(), &mut |_| {}).unwrap();
//! println!("{:.1} ns/op, peak {} bytes", m.ns_per_op(), m.peak.peak_bytes);
//! ```
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod bench;
pub mod check;
pub mod cli;
pub mod peak;
pub mod plot;
pub mod replay;
pub mod report;
pub mod stats;
pub mod table;
