//! The command line: `mcxt replay`, `mcxt stats`, `mcxt plot`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::bench::{measure, BenchOptions};
use crate::replay::{Allocator, ValidTrace};
use crate::report::rows;
use crate::stats::{stats_at, At};
use crate::table::format_table;

/// The trace replayed when `mcxt` runs without arguments.
pub const DEFAULT_TRACE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../traces/pgbench-small.trace.gz"
);

const REPLAY_HELP: &str = "\
Each TRACE is parsed first and compiled into a compact replay program, one
8-byte word per operation (not timed), then for each allocator:
  1. --repeat timed replays of every operation; after each, whatever is left
     is deleted/freed (not timed) and mcxt's caches (contexts, blocks) emptied;
  2. one untimed pass measuring the peak memory held from the system;
  3. with --check, one more untimed replay verifying memory contents.

Allocators:
  mcxt      memory contexts (mcxt::raw), each trace context of its own kind
            (aset, generation, slab, bump). A kind mcxt lacked would be
            replayed as AllocSet and listed in substituted_kinds (none now).
  malloc    glibc malloc/calloc/posix_memalign/realloc/free, one allocation
            per chunk; resets and deletes free each chunk of the dying
            contexts (the bookkeeping a program without contexts needs).
  mimalloc  the same with mi_malloc/mi_zalloc/mi_malloc_aligned/mi_realloc/
            mi_realloc_aligned/mi_free.
  null      no allocation: the cost of the replay loop itself (reading the
            program, telling the operations apart, one table store per
            A/R/F). Every operation still reaches the backend.
  all       mcxt, malloc and mimalloc (add null with --allocator all,null).

Columns: ns/op = fastest replay / ops (median: median replay / ops);
vs malloc = malloc's ns/op / this ns/op (\"x times faster than malloc\");
net ns/op (when null is replayed too) = this ns/op - null's ns/op for the
same trace in the same run: the allocator's cost net of the replay loop;
net vs malloc = malloc's net ns/op / this net ns/op; peak MiB = peak bytes
held from the system; peak/malloc = this peak / malloc's peak.

Peak bytes held from the system, as a growth over a baseline taken just
before the peak pass (tables allocated, malloc_trim(0) and mi_collect done).
Each peak pass runs in a fresh child process (which only parsed the trace),
because glibc and mimalloc keep freed memory and would hide the growth:
  mcxt      sum over root contexts of mem_allocated(true) plus
            mcxt::cached_bytes() (recycled contexts, freed blocks kept for
            reuse), sampled after every operation (exact).
  malloc    glibc mallinfo2() arena + hblkhd (heap obtained from the kernel,
            used or free, plus mmapped large blocks), sampled every 64
            operations and after every A/R of 8 KiB or more.
  mimalloc  mi_process_info() current_commit (memory mimalloc has
            committed), sampled likewise.
  null      0.
JSON key peak_bytes_system: glibc's arena + hblkhd growth during the same
pass, for any allocator; for mcxt, what its blocks cost inside glibc.

--check fills every chunk with a pattern derived from its id (after
verifying zeroing for z allocations), and verifies it on free, on realloc
(contents up to the smaller size, then refills) and for every chunk that
dies with a reset or delete; aligned chunks must stay aligned. Errors are
counted and the first few printed with their operation number. The checked
replay is separate and untimed: reported times never include it. For null
there is no memory to verify (0 errors by construction).

--json prints, instead of the table, one JSON object per line per (trace,
allocator) with keys trace, allocator, ops, repeat, replay_ns_min,
replay_ns_median, ns_per_op, ns_per_op_median, ratio_to_malloc,
net_ns_per_op and net_ratio_to_malloc (null unless the null allocator was
replayed too), peak_bytes, peak_op, peak_ratio_to_malloc,
peak_bytes_system, check_errors (null without --check), substituted_kinds.";

/// `mcxt`: replay PostgreSQL memory-context traces against mcxt, glibc
/// malloc and mimalloc.
///
/// Without a command, replays the project's shipped trace
/// (traces/pgbench-small.trace.gz) with all allocators and prints the
/// comparison table.
#[derive(Debug, Parser)]
#[command(name = "mcxt", version)]
pub struct Cli {
    /// What to do (default: `replay` of the shipped trace with all
    /// allocators).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay traces, time them and measure peak memory, per allocator.
    #[command(after_long_help = REPLAY_HELP)]
    Replay(ReplayArgs),
    /// Print the context trees (PostgreSQL's MemoryContextStats format)
    /// at a point of the mcxt replay.
    Stats(StatsArgs),
    /// Draw memory over time per allocator and the contexts at mcxt's peak
    /// as an SVG picture.
    Plot(PlotArgs),
    /// Internal: one peak pass in this (fresh) process, printed as JSON.
    #[command(name = "__peak-pass", hide = true)]
    PeakPass(PeakPassArgs),
}

/// Arguments of the internal `mcxt __peak-pass`.
#[derive(Debug, Args)]
pub struct PeakPassArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// The allocator.
    #[arg(value_enum)]
    pub allocator: AllocatorArg,
    /// Points of the series.
    pub points: usize,
}

/// `--allocator` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AllocatorArg {
    /// mcxt memory contexts.
    Mcxt,
    /// glibc malloc, one allocation per chunk.
    Malloc,
    /// mimalloc, one allocation per chunk.
    Mimalloc,
    /// No allocation: the replay loop's own cost.
    Null,
    /// mcxt, malloc and mimalloc.
    All,
}

/// Arguments of `mcxt replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Trace files (`NAME.trace.gz`, or plain text).
    #[arg(required = true)]
    pub traces: Vec<PathBuf>,
    /// Allocators to replay with (comma-separated or repeated).
    #[arg(short, long, value_enum, value_delimiter = ',', default_value = "all")]
    pub allocator: Vec<AllocatorArg>,
    /// Also verify memory contents in a separate, untimed replay; exit
    /// status 1 if any error is found.
    #[arg(long)]
    pub check: bool,
    /// Print one JSON object per line per (trace, allocator) instead of
    /// the table.
    #[arg(long)]
    pub json: bool,
    /// Number of timed replays (min and median are reported).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
}

/// Arguments of `mcxt stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// Stop after this many operations, or `peak`: after the operation
    /// where mcxt holds the most memory (found by a first pass).
    #[arg(long, default_value = "peak")]
    pub at: At,
}

/// Arguments of `mcxt plot`.
#[derive(Debug, Args)]
pub struct PlotArgs {
    /// The trace file.
    pub trace: PathBuf,
    /// The SVG file to write.
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Runs the tool on `args` (program name first) and returns the exit
/// status: 0 on success, 1 on check errors, 2 on other errors.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        None => default_replay(),
        Some(Command::Replay(a)) => replay_cmd(&a),
        Some(Command::Stats(a)) => stats_cmd(&a),
        Some(Command::Plot(a)) => plot_cmd(&a),
        Some(Command::PeakPass(a)) => peak_pass_cmd(&a),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("mcxt: {e}");
            ExitCode::from(2)
        }
    }
}

fn default_replay() -> Result<bool, String> {
    let path = Path::new(DEFAULT_TRACE);
    if !path.exists() {
        return Err(format!(
            "the shipped trace is missing: {} (run `mcxt replay TRACE...` with a trace file)",
            path.display()
        ));
    }
    replay_cmd(&ReplayArgs {
        traces: vec![path.to_path_buf()],
        allocator: vec![AllocatorArg::All],
        check: false,
        json: false,
        repeat: 3,
    })
}

/// The allocators selected by `--allocator` values, deduplicated, in the
/// order mcxt, malloc, mimalloc, null.
pub fn allocators(args: &[AllocatorArg]) -> Vec<Allocator> {
    let mut v: Vec<Allocator> = Vec::new();
    for a in args {
        match a {
            AllocatorArg::Mcxt => v.push(Allocator::Mcxt),
            AllocatorArg::Malloc => v.push(Allocator::Malloc),
            AllocatorArg::Mimalloc => v.push(Allocator::Mimalloc),
            AllocatorArg::Null => v.push(Allocator::Null),
            AllocatorArg::All => v.extend(Allocator::ALL),
        }
    }
    v.sort();
    v.dedup();
    v
}

fn progress_bar(len: u64) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(Some(len), target);
    pb.set_style(
        ProgressStyle::with_template("[{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb
}

/// This executable, for isolated peak passes; `None` (in-process passes)
/// if it cannot be found.
fn own_exe() -> Option<PathBuf> {
    std::env::current_exe().ok()
}

fn peak_pass_cmd(a: &PeakPassArgs) -> Result<bool, String> {
    let trace = load(&a.trace)?;
    let alloc = match allocators(&[a.allocator]).as_slice() {
        [one] => *one,
        _ => return Err("__peak-pass takes a single allocator".into()),
    };
    let p = crate::bench::peak_only(&trace, alloc, a.points);
    println!("{}", serde_json::to_string(&p).map_err(|e| e.to_string())?);
    Ok(true)
}

fn load(path: &Path) -> Result<ValidTrace, String> {
    ValidTrace::parse_file(path).map_err(|e| e.to_string())
}

fn replay_cmd(a: &ReplayArgs) -> Result<bool, String> {
    let allocs = allocators(&a.allocator);
    let opts = BenchOptions {
        repeat: a.repeat as usize,
        check: a.check,
        peak_exe: own_exe(),
        ..BenchOptions::default()
    };
    let steps_per = (opts.repeat + 1 + usize::from(opts.check)) as u64;
    let pb = progress_bar(a.traces.len() as u64 * (1 + allocs.len() as u64 * steps_per));
    let mut all_rows = Vec::new();
    let mut ok = true;
    let mut check_text = String::new();
    for path in &a.traces {
        pb.set_message(format!("parsing {}", path.display()));
        let trace = load(path)?;
        pb.inc(1);
        let mut ms = Vec::new();
        for &alloc in &allocs {
            let m = measure(&trace, alloc, &opts, &mut |phase| {
                pb.set_message(format!("{}: {alloc}: {phase}", trace.name));
                pb.inc(1);
            })?;
            if let Some(c) = &m.check {
                ok &= c.ok();
                check_text.push_str(&format!(
                    "check {} {}: {}\n",
                    trace.name,
                    alloc,
                    c.display(&trace)
                ));
            }
            ms.push(m);
        }
        let rs = rows(&ms);
        if a.json {
            pb.suspend(|| {
                let mut out = std::io::stdout().lock();
                for r in &rs {
                    let _ = writeln!(out, "{}", serde_json::to_string(r).expect("serialisable"));
                }
                let _ = out.flush();
            });
        }
        all_rows.extend(rs);
    }
    pb.finish_and_clear();
    if a.json {
        if !check_text.is_empty() {
            eprint!("{check_text}");
        }
    } else {
        print!("{}", format_table(&all_rows));
        if !check_text.is_empty() {
            println!();
            print!("{check_text}");
        }
    }
    Ok(ok)
}

fn stats_cmd(a: &StatsArgs) -> Result<bool, String> {
    let trace = load(&a.trace)?;
    let s = stats_at(&trace, a.at)?;
    print!("{}", s.render(&trace.name, a.at));
    Ok(true)
}

fn plot_cmd(a: &PlotArgs) -> Result<bool, String> {
    let pb = progress_bar(5);
    pb.set_message(format!("parsing {}", a.trace.display()));
    let trace = load(&a.trace)?;
    pb.inc(1);
    let data = crate::plot::gather(&trace, own_exe().as_deref(), |what| {
        pb.set_message(format!("{}: {what}", trace.name));
        pb.inc(1);
    })?;
    crate::plot::render_svg(&data, &a.output)?;
    pb.finish_and_clear();
    eprintln!("wrote {}", a.output.display());
    Ok(true)
}
