//! The symbols `include/mcxt.h` declares, read from its text.
//!
//! Shared by `build.rs` (which exports exactly these symbols from
//! `libmcxt.so`) and the tests (which check them against `nm -D` and the C
//! test programs). The header declares each function on one line, as
//! `extern <type> <name>(<parameters>);`, and each variable as
//! `extern MCXT_THREAD_LOCAL <type> <name>;`.

/// What a declared symbol is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolKind {
    /// A function (exported, callable).
    Function,
    /// A thread-local variable.
    Variable,
}

/// The exported symbols declared in `header`, in order of declaration.
pub fn declared_symbols(header: &str) -> Vec<(String, SymbolKind)> {
    let mut out = Vec::new();
    for line in header.lines() {
        let line = line.trim();
        let Some(decl) = line.strip_prefix("extern ") else {
            continue;
        };
        if !decl.ends_with(';') || decl.starts_with('"') {
            continue;
        }
        let (head, kind) = match decl.find('(') {
            Some(paren) => (&decl[..paren], SymbolKind::Function),
            None => (decl.trim_end_matches(';'), SymbolKind::Variable),
        };
        let name: String = head
            .trim_end()
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        if !name.is_empty() {
            out.push((name, kind));
        }
    }
    out
}
