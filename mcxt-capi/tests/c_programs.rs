//! The C test programs of `tests/c`, compiled with the system C compiler
//! against `libmcxt` and run: natively (linked against the shared and the
//! static library) and under Valgrind memcheck; plus checks of the header
//! against the exported symbols, and the C benchmark (ignored by default).
//!
//! `cargo test` does not build a cdylib/staticlib for integration tests,
//! so the first test to need the library runs `cargo build -p mcxt-capi`
//! (same profile as the tests) and takes the artifacts' paths from its
//! JSON messages.

#[path = "../src/symbols.rs"]
mod symbols;

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use symbols::{declared_symbols, SymbolKind};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// Libraries the static `libmcxt.a` needs (Rust's std), on Linux/glibc.
const STATIC_DEPS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];

struct Library {
    shared: PathBuf,
    archive: PathBuf,
}

/// Builds the library once per test process.
fn library() -> &'static Library {
    static LIBRARY: OnceLock<Library> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(MANIFEST_DIR).args([
            "build",
            "-p",
            "mcxt-capi",
            "--lib",
            "--message-format=json-render-diagnostics",
        ]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build -p mcxt-capi failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (mut shared, mut archive) = (None, None);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let kinds = &msg["target"]["kind"];
            let is_capi = msg["reason"] == "compiler-artifact"
                && kinds
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
            if !is_capi {
                continue;
            }
            for f in msg["filenames"].as_array().into_iter().flatten() {
                let f = PathBuf::from(f.as_str().unwrap_or_default());
                match f.file_name().and_then(|n| n.to_str()) {
                    Some("libmcxt.so") => shared = Some(f),
                    Some("libmcxt.a") => archive = Some(f),
                    _ => {}
                }
            }
        }
        Library {
            shared: shared.expect("cargo reported no libmcxt.so"),
            archive: archive.expect("cargo reported no libmcxt.a"),
        }
    })
}

#[derive(Clone, Copy, Debug)]
enum Link {
    Shared,
    Static,
}

fn c_compiler() -> String {
    env::var("CC").unwrap_or_else(|_| "cc".into())
}

fn out_dir() -> PathBuf {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("mcxt-capi-c")
        .join(profile);
    fs::create_dir_all(&dir).expect("create the output directory");
    dir
}

/// Compiles `source` (relative to the crate) with `-Wall -Wextra -Werror`
/// and links it against libmcxt; returns the executable.
fn compile(source: &str, link: Link, extra: &[&str]) -> PathBuf {
    let lib = library();
    let src = Path::new(MANIFEST_DIR).join(source);
    let stem = src.file_stem().unwrap().to_string_lossy().into_owned();
    let exe = out_dir().join(format!("{stem}-{link:?}").to_lowercase());
    // Tests compiling the same program run in parallel: each links to a
    // name of its own and renames it into place, so that none executes a
    // file another is still writing (ETXTBSY, "Text file busy").
    static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let partial = exe.with_extension(format!("{}-{n}.partial", std::process::id()));
    let mut cmd = Command::new(c_compiler());
    cmd.args(["-std=gnu11", "-g", "-O2", "-Wall", "-Wextra", "-Werror"])
        .arg("-I")
        .arg(Path::new(MANIFEST_DIR).join("include"))
        .arg("-I")
        .arg(Path::new(MANIFEST_DIR).join("tests/c"))
        .args(extra)
        .arg(&src)
        .arg("-o")
        .arg(&partial);
    match link {
        Link::Shared => {
            let dir = lib.shared.parent().unwrap();
            cmd.arg("-L")
                .arg(dir)
                .arg("-lmcxt")
                .arg(format!("-Wl,-rpath,{}", dir.display()));
        }
        Link::Static => {
            cmd.arg(&lib.archive).args(STATIC_DEPS);
        }
    }
    let out = cmd.output().expect("run the C compiler");
    assert!(
        out.status.success(),
        "compiling {source} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&partial, &exe).expect("move the executable into place");
    exe
}

fn show(out: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(exe: &Path, args: &[&str]) -> Output {
    Command::new(exe)
        .args(args)
        .output()
        .expect("run the C program")
}

fn run_ok(exe: &Path, args: &[&str]) -> Output {
    let out = run(exe, args);
    assert!(out.status.success(), "{}", show(&out));
    out
}

fn valgrind_available() -> bool {
    let found = Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("valgrind not found: skipping the memcheck run");
    }
    found
}

/// Runs `exe` under Valgrind memcheck; any error or leak fails the test.
fn run_valgrind(exe: &Path, args: &[&str]) {
    if !valgrind_available() {
        return;
    }
    let out = Command::new("valgrind")
        .args([
            "--error-exitcode=1",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect,possible",
            "--track-origins=yes",
            "-q",
        ])
        .arg(exe)
        .args(args)
        .output()
        .expect("run valgrind");
    assert!(out.status.success(), "valgrind: {}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.lines().any(|l| l.starts_with("==")),
        "valgrind reported:\n{stderr}"
    );
}

fn header() -> String {
    fs::read_to_string(Path::new(MANIFEST_DIR).join("include/mcxt.h")).expect("read mcxt.h")
}

fn assert_clean_check(out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("WARNING"),
        "MemoryContextCheck found problems:\n{stderr}"
    );
}

// ---- The header and the exports --------------------------------------------

#[test]
fn exported_symbols_match_the_header() {
    let declared: BTreeSet<String> = declared_symbols(&header())
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert!(declared.len() > 40, "{declared:?}");
    let lib = library();
    let Ok(out) = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&lib.shared)
        .output()
    else {
        eprintln!("nm not found: skipping the symbol check");
        return;
    };
    assert!(out.status.success(), "{}", show(&out));
    // The internal entry points (mcxt__*) of the Rust half are exported
    // too, for the C half; everything else must be the header's.
    let exported: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .filter(|name| !name.starts_with("mcxt__") && !name.starts_with('_'))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        exported.difference(&declared).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "exported but not declared in mcxt.h"
    );
    assert_eq!(
        declared.difference(&exported).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "declared in mcxt.h but not exported by libmcxt.so"
    );

    // The static library defines them all too.
    let out = Command::new("nm")
        .args(["--defined-only", "-g"])
        .arg(&lib.archive)
        .output()
        .expect("nm");
    let archive_symbols: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(str::to_owned)
        .collect();
    for name in &declared {
        assert!(
            archive_symbols.contains(name),
            "{name} missing from libmcxt.a"
        );
    }
}

#[test]
fn api_program_uses_every_declaration() {
    let api = fs::read_to_string(Path::new(MANIFEST_DIR).join("tests/c/api.c")).unwrap();
    let mut names: Vec<String> = declared_symbols(&header())
        .into_iter()
        .map(|(name, kind)| match kind {
            SymbolKind::Function => format!("{name}("),
            SymbolKind::Variable => name,
        })
        .collect();
    for extra in [
        "MemoryContextSwitchTo(",
        "AllocSetContextCreate(",
        "ALLOCSET_DEFAULT_SIZES",
        "ALLOCSET_SMALL_SIZES",
        "ALLOCSET_START_SMALL_SIZES",
        "SLAB_DEFAULT_BLOCK_SIZE",
        "SLAB_LARGE_BLOCK_SIZE",
        "MaxAllocSize",
        "MaxAllocHugeSize",
        "AllocSizeIsValid(",
        "AllocHugeSizeIsValid(",
        "MCXT_ALLOC_HUGE",
        "MCXT_ALLOC_NO_OOM",
        "MCXT_ALLOC_ZERO",
        "MCXT_NO_LIMIT",
        "MemoryContextCallback ",
    ] {
        names.push(extra.to_owned());
    }
    let missing: Vec<&String> = names.iter().filter(|n| !api.contains(n.as_str())).collect();
    assert!(missing.is_empty(), "tests/c/api.c does not use {missing:?}");
}

#[test]
fn header_compiles_as_strict_c99_and_as_cxx() {
    let dir = out_dir();
    let include = Path::new(MANIFEST_DIR).join("include");
    let c = dir.join("strict.c");
    fs::write(
        &c,
        "#include \"mcxt.h\"\nint main(void) { MemoryContextInit(); \
         MemoryContext c = AllocSetContextCreate(TopMemoryContext, \"c\", ALLOCSET_DEFAULT_SIZES); \
         return MemoryContextSwitchTo(c) == NULL; }\n",
    )
    .unwrap();
    let out = Command::new(c_compiler())
        .args([
            "-std=c99",
            "-pedantic",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-c",
            "-o",
        ])
        .arg(dir.join("strict.o"))
        .arg("-I")
        .arg(&include)
        .arg(&c)
        .output()
        .expect("run the C compiler");
    assert!(out.status.success(), "{}", show(&out));

    let cxx = dir.join("header.cc");
    fs::write(
        &cxx,
        "#include \"mcxt.h\"\nint main() { MemoryContextInit(); \
         MemoryContext c = AllocSetContextCreate(TopMemoryContext, \"c\", ALLOCSET_DEFAULT_SIZES); \
         return MemoryContextSwitchTo(c) == nullptr; }\n",
    )
    .unwrap();
    let Ok(out) = Command::new(env::var("CXX").unwrap_or_else(|_| "c++".into()))
        .args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-c", "-o"])
        .arg(dir.join("header.o"))
        .arg("-I")
        .arg(&include)
        .arg(&cxx)
        .output()
    else {
        eprintln!("no C++ compiler: skipping the C++ check");
        return;
    };
    assert!(out.status.success(), "{}", show(&out));
}

#[test]
fn context_names_must_be_constant_strings() {
    let dir = out_dir();
    let src = dir.join("variable_name.c");
    fs::write(
        &src,
        "#include \"mcxt.h\"\n#include <stdlib.h>\nint main(void) { MemoryContextInit(); \
         const char *name = getenv(\"NAME\"); \
         return AllocSetContextCreate(NULL, name, ALLOCSET_DEFAULT_SIZES) == NULL; }\n",
    )
    .unwrap();
    for opt in ["-O0", "-O2"] {
        let out = Command::new(c_compiler())
            .args([opt, "-c", "-o"])
            .arg(dir.join("variable_name.o"))
            .arg("-I")
            .arg(Path::new(MANIFEST_DIR).join("include"))
            .arg(&src)
            .output()
            .expect("run the C compiler");
        assert!(!out.status.success(), "a variable name compiled ({opt})");
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("memory context names must be constant strings"),
            "{}",
            show(&out)
        );
    }
}

// ---- The API ----------------------------------------------------------------

#[test]
fn api_shared() {
    let out = run_ok(&compile("tests/c/api.c", Link::Shared, &[]), &[]);
    assert_clean_check(&out);
}

#[test]
fn api_static() {
    let out = run_ok(&compile("tests/c/api.c", Link::Static, &[]), &[]);
    assert_clean_check(&out);
}

#[test]
fn api_valgrind() {
    run_valgrind(&compile("tests/c/api.c", Link::Shared, &[]), &[]);
}

// ---- Errors -----------------------------------------------------------------

#[test]
fn longjmp_error_handler() {
    for link in [Link::Shared, Link::Static] {
        let out = run_ok(&compile("tests/c/longjmp.c", link, &[]), &[]);
        assert_clean_check(&out);
        // Out-of-memory errors print the stats of TopMemoryContext first.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("TopMemoryContext: "), "{stderr}");
        assert!(stderr.contains("    limited: "), "{stderr}");
    }
}

#[test]
fn longjmp_error_handler_valgrind() {
    run_valgrind(&compile("tests/c/longjmp.c", Link::Shared, &[]), &[]);
}

#[test]
fn fatal_errors_abort() {
    let exe = compile("tests/c/fatal.c", Link::Shared, &[]);
    let cases: [(&str, &[&str]); 3] = [
        (
            "default",
            &["ERROR:  invalid memory alloc request size 1073741824 in memory context \"TopMemoryContext\""],
        ),
        (
            "callback",
            &[
                "ERROR:  invalid memory alloc request size 1073741824",
                "FATAL:  error raised inside a memory context reset callback",
            ],
        ),
        (
            "returning",
            &[
                "handler returning: pfree called with a NULL pointer",
                "FATAL:  the memory context error handler returned",
            ],
        ),
    ];
    for (mode, expected) in cases {
        let out = run(&exe, &[mode]);
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{mode}: SIGABRT expected\n{}",
            show(&out)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        for e in expected {
            assert!(stderr.contains(e), "{mode}: no {e:?} in\n{}", show(&out));
        }
        assert!(!stderr.contains("handler called"), "{mode}: {}", show(&out));
    }
}

// ---- Stats ------------------------------------------------------------------

/// Splits `<indent><name>: <stats>` into (depth, name, stats).
fn stats_line(line: &str) -> (usize, &str, &str) {
    let trimmed = line.trim_start_matches(' ');
    let indent = line.len() - trimmed.len();
    assert_eq!(indent % 2, 0, "odd indentation: {line:?}");
    let (name, stats) = trimmed.split_once(": ").expect("name: stats");
    (indent / 2, name, stats)
}

/// The numbers of a stats string, checked against PostgreSQL's pattern for
/// the kind (`#` stands for a number).
fn numbers(stats: &str, pattern: &str) -> Vec<usize> {
    let mut values = Vec::new();
    let mut shape = String::new();
    let mut chars = stats.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut n = c.to_digit(10).unwrap() as usize;
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n * 10 + d as usize;
                chars.next();
            }
            values.push(n);
            shape.push('#');
        } else {
            shape.push(c);
        }
    }
    assert_eq!(shape, pattern, "stats line {stats:?}");
    values
}

const ASET: &str = "# total in # blocks; # free (# chunks); # used";

#[test]
fn stats_format() {
    let out = run_ok(&compile("tests/c/stats.c", Link::Shared, &[]), &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let total: usize = stdout
        .trim()
        .strip_prefix("total ")
        .expect("total line")
        .parse()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    // Top, "many", 100 leaves, the summary of 20 more, the four other
    // children, ErrorContext, the grand total.
    assert_eq!(lines.len(), 1 + 1 + 100 + 1 + 4 + 1 + 1, "{stderr}");

    // Checks a context line; returns its total.
    let expect = |line: &str, depth: usize, name: &str, pattern: &str| -> usize {
        let (d, n, stats) = stats_line(line);
        assert_eq!((d, n), (depth, name), "{line}");
        let values = numbers(stats, pattern);
        let used = values.last().copied().unwrap();
        // The number just before " free".
        let free_index = pattern
            .match_indices('#')
            .position(|(i, _)| pattern[i..].starts_with("# free"))
            .expect("a free figure");
        assert_eq!(
            values[0],
            values[free_index] + used,
            "total = free + used in {line}"
        );
        values[0]
    };
    let mut sum = expect(lines[0], 0, "TopMemoryContext", ASET);
    sum += expect(lines[1], 1, "many", ASET);
    for leaf in &lines[2..102] {
        sum += expect(leaf, 2, "leaf", ASET);
    }
    let summary = lines[102].strip_prefix("    ").expect("summary indent");
    let values = numbers(
        summary,
        "# more child contexts containing # total in # blocks; # free (# chunks); # used",
    );
    assert_eq!(values[0], 20);
    sum += values[1];
    sum += expect(lines[103], 1, "bump", "# total in # blocks; # free; # used");
    sum += expect(
        lines[104],
        1,
        "slab",
        "# total in # blocks; # empty blocks; # free (# chunks); # used",
    );
    sum += expect(
        lines[105],
        1,
        "generation",
        "# total in # blocks (# chunks); # free (# chunks); # used",
    );
    let (d, n, stats) = stats_line(lines[106]);
    assert_eq!((d, n), (1, "with ident"));
    let (stats, ident) = stats.split_once(": ").expect("ident");
    assert_eq!(ident, "id: 42");
    let values = numbers(stats, ASET);
    sum += values[0];
    sum += expect(lines[107], 1, "ErrorContext", ASET);
    let grand = numbers(
        lines[108]
            .strip_prefix("Grand total: ")
            .expect("grand total"),
        "# bytes in # blocks; # free (# chunks); # used",
    );
    assert_eq!(grand[0], total, "grand total = MemoryContextMemAllocated");
    assert_eq!(sum, total, "the lines add up to the grand total");
}

#[test]
fn stats_valgrind() {
    run_valgrind(&compile("tests/c/stats.c", Link::Shared, &[]), &[]);
}

// ---- Threads ----------------------------------------------------------------

#[test]
fn threads_have_their_own_contexts() {
    for link in [Link::Shared, Link::Static] {
        let out = run_ok(&compile("tests/c/threads.c", link, &["-pthread"]), &[]);
        assert_clean_check(&out);
    }
}

#[test]
fn threads_valgrind() {
    run_valgrind(
        &compile("tests/c/threads.c", Link::Shared, &["-pthread"]),
        &[],
    );
}

// ---- Benchmark --------------------------------------------------------------

/// `cargo test --release -p mcxt-capi -- --ignored --nocapture bench`
#[test]
#[ignore = "benchmark: run with --release -- --ignored --nocapture"]
fn bench() {
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; run with --release for meaningful numbers");
    }
    for link in [Link::Static, Link::Shared] {
        let exe = compile("bench/bench.c", link, &[]);
        let out = run_ok(&exe, &[]);
        println!(
            "== libmcxt ({link:?})\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

// ---- The README -------------------------------------------------------------

#[test]
fn readme_example_compiles_and_runs() {
    let readme = fs::read_to_string(Path::new(MANIFEST_DIR).join("README.md")).unwrap();
    let start = readme.find("```c\n").expect("a C example") + "```c\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let src = out_dir().join("readme_example.c");
    fs::write(&src, &readme[start..end]).unwrap();
    for link in [Link::Shared, Link::Static] {
        let out = run_ok(&compile(src.to_str().unwrap(), link, &[]), &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("caught: invalid memory alloc request size 1073741824"),
            "{}",
            show(&out)
        );
        assert!(stderr.contains("per tuple: "), "{}", show(&out));
    }
}
