//! The `mcxt` command-line tool; everything is in the `mcxt_cli` library.

fn main() -> std::process::ExitCode {
    mcxt_cli::cli::main_with_args(std::env::args_os())
}
