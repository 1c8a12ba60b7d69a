//! The text table of `mcxt replay`.

use std::fmt::Write;

use crate::report::Row;

/// Bytes per MiB.
pub const MIB: f64 = 1024.0 * 1024.0;

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_owned(), f)
}

/// Formats `rows` as an aligned table with a legend. The check column
/// appears when any row has a check result, the net columns when any row
/// has a net figure (the `null` allocator was replayed).
pub fn format_table(rows: &[Row]) -> String {
    let with_check = rows.iter().any(|r| r.check_errors.is_some());
    let with_net = rows.iter().any(|r| r.net_ns_per_op.is_some());
    let mut header = vec!["trace", "allocator", "ops", "ns/op", "median", "vs malloc"];
    if with_net {
        header.extend(["net ns/op", "net vs malloc"]);
    }
    header.extend(["peak MiB", "peak/malloc", "glibc MiB"]);
    if with_check {
        header.push("check");
    }
    let mut cells: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for r in rows {
        let mut line = vec![
            r.trace.clone(),
            r.allocator.clone(),
            thousands(r.ops as u64),
            format!("{:.1}", r.ns_per_op),
            format!("{:.1}", r.ns_per_op_median),
            opt(r.ratio_to_malloc, |x| format!("{x:.2}x")),
        ];
        if with_net {
            line.push(opt(r.net_ns_per_op, |x| format!("{x:.1}")));
            line.push(opt(r.net_ratio_to_malloc, |x| format!("{x:.2}x")));
        }
        line.extend([
            format!("{:.2}", r.peak_bytes as f64 / MIB),
            opt(r.peak_ratio_to_malloc, |x| format!("{x:.2}")),
            format!("{:.2}", r.peak_bytes_system as f64 / MIB),
        ]);
        if with_check {
            line.push(match r.check_errors {
                Some(0) => "ok".to_owned(),
                Some(n) => format!("{n} ERRORS"),
                None => "-".to_owned(),
            });
        }
        cells.push(line);
    }
    let ncol = cells[0].len();
    let width: Vec<usize> = (0..ncol)
        .map(|c| {
            cells
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, line) in cells.iter().enumerate() {
        for (c, cell) in line.iter().enumerate() {
            let pad = width[c] - cell.chars().count();
            if c > 0 {
                out.push_str("  ");
            }
            if c < 2 {
                out.push_str(cell);
                if c + 1 < ncol {
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            } else {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(cell);
            }
        }
        out.push('\n');
        if i == 0 {
            let total: usize = width.iter().sum::<usize>() + 2 * (ncol - 1);
            out.extend(std::iter::repeat_n('-', total));
            out.push('\n');
        }
    }
    let mut subst: Vec<(&str, &str)> = Vec::new();
    for r in rows {
        for k in &r.substituted_kinds {
            if !subst.contains(&(r.trace.as_str(), k.as_str())) {
                subst.push((&r.trace, k));
            }
        }
    }
    out.push_str(
        "\nns/op: fastest replay (median: median replay) / ops. vs malloc: malloc ns/op / this ns/op\n\
         (higher is faster). peak MiB: most memory held from the system (mcxt: its contexts' blocks\n\
         + its caches, exact; malloc: glibc arena+hblkhd; mimalloc: committed; sampled every\n\
         64 ops and after large ones). peak/malloc: this peak / malloc's peak (lower is leaner).\n\
         glibc MiB: growth of glibc's heap during the peak pass (mcxt's blocks come from malloc).\n",
    );
    if with_net {
        out.push_str(
            "net ns/op: this ns/op - null's ns/op for the same trace in this run, i.e. the allocator's\n\
             own cost without the replay loop's (null replays every operation without allocating).\n\
             net vs malloc: malloc's net ns/op / this net ns/op (higher is faster).\n",
        );
    }
    if !subst.is_empty() {
        let mut by_trace: Vec<(&str, Vec<&str>)> = Vec::new();
        for (t, k) in subst {
            match by_trace.iter_mut().find(|(tt, _)| *tt == t) {
                Some((_, ks)) => ks.push(k),
                None => by_trace.push((t, vec![k])),
            }
        }
        for (t, ks) in by_trace {
            let _ = writeln!(
                out,
                "{t}: mcxt has no {} context kind yet; replayed as AllocSet.",
                ks.join("/")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(7148368), "7,148,368");
    }
}
