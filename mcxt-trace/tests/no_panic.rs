//! Property tests: parsing never panics, whatever the input (arbitrary
//! bytes, lines built from trace-like tokens, mutated valid traces), and
//! random valid traces built by an independent model parse with the
//! model's counts and round-trip.

use std::io::Write;

use flate2::write::GzEncoder;
use flate2::Compression;
use mcxt_trace::{parse_reader, parse_str, Trace};
use proptest::prelude::*;

/// Parses bytes; if it succeeds, checks a few invariants of the result.
fn parse_bytes(bytes: &[u8]) {
    if let Ok(t) = parse_reader("fuzz", bytes) {
        check_invariants(&t);
    }
}

fn check_invariants(t: &Trace) {
    let s = &t.stats;
    assert_eq!(s.ops.total(), t.ops.len() as u64);
    assert_eq!(s.contexts_created, u64::from(t.n_contexts));
    assert_eq!(s.chunks_allocated, u64::from(t.n_chunks));
    assert_eq!(t.creates.len(), t.n_contexts as usize);
    assert_eq!(
        s.chunks_allocated,
        s.chunks_freed + s.chunks_died_with_context + s.live_chunks_at_end
    );
    assert!(s.max_live_chunks >= s.live_chunks_at_end);
    assert!(s.max_live_contexts >= s.live_contexts_at_end);
    assert!(s.max_live_bytes >= s.live_bytes_at_end);
    assert_eq!(s.size_histogram.iter().sum::<u64>(), s.ops.alloc);
    for op in &t.ops {
        assert!(op.ctx().is_none_or(|c| c < t.n_contexts));
        assert!(op.chunk().is_none_or(|c| c < t.n_chunks));
    }
}

/// Tokens that make the parser go deep.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "C", "A", "R", "F", "X", "O", "H", "D", "P", "#", "-", "z", "h", "n", "zh", "hn",
            "zz", "aset", "generation", "slab", "bump", "", "0", "1", "2", "3", "4", "8", "16",
            "64", "128", "01", "-1", "1073741823", "1073741824", "2147483648", "4294967295",
            "4294967296", "18446744073709551615", "18446744073709551616",
            "99999999999999999999999", "\u{e9}", "\r",
        ])
        .prop_map(str::to_owned),
        1 => (0u64..6).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => "[ -~]{0,6}",
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..9).prop_map(|t| t.join(" "))
}

/// A random valid trace, built by a small model of the liveness rules (an
/// implementation independent of the parser's).
#[derive(Clone, Debug, Default)]
struct Model {
    /// (alive, parent, kind, p2)
    ctxs: Vec<(bool, Option<usize>, &'static str, u64)>,
    /// (alive, ctx, size)
    chunks: Vec<(bool, usize, u64)>,
    text: String,
    n_ops: u64,
    freed: u64,
    died: u64,
}

impl Model {
    fn live_ctxs(&self) -> Vec<usize> {
        (0..self.ctxs.len()).filter(|&c| self.ctxs[c].0).collect()
    }

    fn is_descendant(&self, mut x: usize, of: usize) -> bool {
        loop {
            if x == of {
                return true;
            }
            match self.ctxs[x].1 {
                Some(p) => x = p,
                None => return false,
            }
        }
    }

    fn kill_chunks(&mut self, c: usize) {
        for k in &mut self.chunks {
            if k.0 && k.1 == c {
                k.0 = false;
                self.died += 1;
            }
        }
    }

    /// Kills `c`'s strict descendants.
    fn kill_descendants(&mut self, c: usize) {
        let victims: Vec<usize> = self
            .live_ctxs()
            .into_iter()
            .filter(|&x| x != c && self.is_descendant(x, c))
            .collect();
        for x in victims {
            self.kill_chunks(x);
            self.ctxs[x].0 = false;
        }
    }

    fn line(&mut self, s: String) {
        self.text.push_str(&s);
        self.text.push('\n');
        self.n_ops += 1;
    }

    fn step(&mut self, what: u8, a: u32, b: u32) {
        let live = self.live_ctxs();
        if live.is_empty() || what % 16 == 0 {
            let kinds = ["aset", "generation", "slab", "bump"];
            let kind = kinds[(a % 4) as usize];
            let parent = if live.is_empty() || b % 3 == 0 {
                None
            } else {
                Some(live[b as usize % live.len()])
            };
            let p2 = u64::from(b % 100) + 1;
            let (p1, p3) = if kind == "slab" { (8192, 0) } else { (0, 8192) };
            let id = self.ctxs.len();
            self.ctxs.push((true, parent, kind, p2));
            let par = parent.map_or("-".to_owned(), |p| (p + 1).to_string());
            self.line(format!("C {} {par} {kind} {p1} {p2} {p3} ctx {id}", id + 1));
            return;
        }
        let c = live[a as usize % live.len()];
        let live_chunks: Vec<usize> = (0..self.chunks.len())
            .filter(|&k| self.chunks[k].0 && self.ctxs[self.chunks[k].1].2 != "bump")
            .collect();
        match what % 16 {
            1..=6 => {
                let kind = self.ctxs[c].2;
                let size = if kind == "slab" {
                    self.ctxs[c].3
                } else {
                    u64::from(b % 300)
                };
                let flags = ["-", "z", "h", "n", "zn"][(b % 5) as usize];
                let align = if kind != "slab" && b % 7 == 0 {
                    " 128"
                } else {
                    ""
                };
                self.chunks.push((true, c, size));
                let id = self.chunks.len();
                self.line(format!("A {id} {} {size} {flags}{align}", c + 1));
            }
            7 | 8 if !live_chunks.is_empty() => {
                let k = live_chunks[b as usize % live_chunks.len()];
                self.chunks[k].0 = false;
                self.freed += 1;
                self.line(format!("F {}", k + 1));
            }
            9 if !live_chunks.is_empty() => {
                let k = live_chunks[b as usize % live_chunks.len()];
                let ctx = self.chunks[k].1;
                let size = if self.ctxs[ctx].2 == "slab" {
                    self.ctxs[ctx].3
                } else {
                    u64::from(a % 500)
                };
                let flags = ["", " -", " h", " n"][(a % 4) as usize];
                self.line(format!("R {} {size}{flags}", k + 1));
            }
            10 => {
                self.kill_descendants(c);
                self.kill_chunks(c);
                self.line(format!("X {}", c + 1));
            }
            11 => {
                self.kill_chunks(c);
                self.line(format!("O {}", c + 1));
            }
            12 => {
                self.kill_descendants(c);
                self.line(format!("H {}", c + 1));
            }
            13 => {
                self.kill_descendants(c);
                self.kill_chunks(c);
                self.ctxs[c].0 = false;
                self.line(format!("D {}", c + 1));
            }
            14 => {
                let targets: Vec<usize> = live
                    .iter()
                    .copied()
                    .filter(|&p| !self.is_descendant(p, c))
                    .collect();
                if targets.is_empty() || b % 4 == 0 {
                    self.ctxs[c].1 = None;
                    self.line(format!("P {} -", c + 1));
                } else {
                    let p = targets[b as usize % targets.len()];
                    self.ctxs[c].1 = Some(p);
                    self.line(format!("P {} {}", c + 1, p + 1));
                }
            }
            _ => {
                self.text.push_str("# a comment\n");
            }
        }
    }
}

fn valid_trace() -> impl Strategy<Value = Model> {
    prop::collection::vec((any::<u8>(), any::<u32>(), any::<u32>()), 0..120).prop_map(|steps| {
        let mut m = Model {
            text: "mcxt-trace 1\n".to_owned(),
            ..Model::default()
        };
        for (w, a, b) in steps {
            m.step(w, a, b);
        }
        m
    })
}

#[derive(Clone, Debug)]
enum Mutation {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    SetByte(usize, u8),
    InsertLine(usize, String),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DeleteLine),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Mutation::SetByte(a, b)),
        (any::<usize>(), line()).prop_map(|(a, l)| Mutation::InsertLine(a, l)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(text: &str, muts: &[Mutation]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = text.lines().map(|l| l.as_bytes().to_vec()).collect();
    let mut truncate = None;
    for m in muts {
        let n = lines.len().max(1);
        match m {
            Mutation::DeleteLine(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Mutation::DuplicateLine(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Mutation::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Mutation::SetByte(i, v) if !lines.is_empty() => {
                let l = &mut lines[i % n];
                if !l.is_empty() {
                    let j = (i / n) % l.len();
                    l[j] = *v;
                }
            }
            Mutation::InsertLine(i, s) => {
                lines.insert(i % (lines.len() + 1), s.as_bytes().to_vec())
            }
            Mutation::Truncate(i) => truncate = Some(*i),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(&l);
        out.push(b'\n');
    }
    if let Some(i) = truncate {
        out.truncate(i % (out.len() + 1));
    }
    out
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        parse_bytes(&bytes);
        let mut with_header = b"mcxt-trace 1\n".to_vec();
        with_header.extend_from_slice(&bytes);
        parse_bytes(&with_header);
        // behind a gzip magic: corrupt gzip data
        let mut gzipped = vec![0x1f, 0x8b];
        gzipped.extend_from_slice(&bytes);
        parse_bytes(&gzipped);
    }

    #[test]
    fn arbitrary_strings(s in "\\PC{0,200}") {
        let _ = parse_str("fuzz", &s);
        let _ = parse_str("fuzz", &format!("mcxt-trace 1\n{s}"));
    }

    #[test]
    fn token_lines(lines in prop::collection::vec(line(), 0..40), prefix in 0usize..3) {
        let mut text = String::from("mcxt-trace 1\n");
        // give the lines some live ids to refer to
        if prefix > 0 {
            text.push_str("C 1 - aset 0 8192 8192 top\nC 2 1 slab 8192 64 0 s\nC 3 1 bump 0 0 0 b\nA 1 1 8 -\nA 2 2 64 -\nA 3 3 1 -\n");
        }
        if prefix > 1 {
            text.push_str("C 4 2 generation 0 0 0 g\nA 4 4 0 z 8\n");
        }
        for l in &lines {
            text.push_str(l);
            text.push('\n');
        }
        if let Ok(t) = parse_str("fuzz", &text) {
            check_invariants(&t);
        }
    }

    #[test]
    fn valid_traces_parse(m in valid_trace()) {
        let t = match parse_str("model", &m.text) {
            Ok(t) => t,
            Err(e) => panic!("{e}\n{}", m.text),
        };
        check_invariants(&t);
        prop_assert_eq!(t.ops.len() as u64, m.n_ops);
        prop_assert_eq!(t.n_contexts as usize, m.ctxs.len());
        prop_assert_eq!(t.n_chunks as usize, m.chunks.len());
        prop_assert_eq!(t.stats.chunks_freed, m.freed);
        prop_assert_eq!(t.stats.chunks_died_with_context, m.died);
        prop_assert_eq!(
            t.stats.live_contexts_at_end,
            m.ctxs.iter().filter(|c| c.0).count() as u64
        );
        prop_assert_eq!(
            t.stats.live_chunks_at_end,
            m.chunks.iter().filter(|c| c.0).count() as u64
        );
        let live_bytes: u64 = m.chunks.iter().filter(|c| c.0).map(|c| c.2).sum();
        // R changes sizes the model does not track; only check without R
        if t.stats.ops.realloc == 0 {
            prop_assert_eq!(t.stats.live_bytes_at_end, u128::from(live_bytes));
        }
        // round trip through the writer, and through gzip
        let mut out = Vec::new();
        t.write_to(&mut out).unwrap();
        let back = parse_reader("model", &gz(&out)[..]).unwrap();
        prop_assert_eq!(back, t);
    }

    #[test]
    fn mutated_valid_traces(m in valid_trace(), muts in prop::collection::vec(mutation(), 1..4)) {
        let bytes = mutate(&m.text, &muts);
        parse_bytes(&bytes);
        parse_bytes(&gz(&bytes));
    }
}

/// Deep context chains and wide resets, well beyond what a recursive
/// implementation could handle on its stack.
#[test]
fn deep_and_wide() {
    let n = 200_000;
    let mut text = String::from("mcxt-trace 1\nC 1 - aset 0 0 0 root\n");
    for i in 2..=n {
        text.push_str(&format!(
            "C {i} {} aset 0 0 0 c\nA {} {i} 8 -\n",
            i - 1,
            i - 1
        ));
    }
    // 1 under the deepest context: depth n; then delete the whole chain
    text.push_str("P 2 -\nP 1 200000\nD 2\n");
    // a wide tree: one root with many children, reset at once
    let root = n + 1;
    text.push_str(&format!("C {root} - aset 0 0 0 wide\n"));
    for i in root + 1..=2 * n {
        text.push_str(&format!("C {i} {root} aset 0 0 0 w\n"));
    }
    text.push_str(&format!("H {root}\nX {root}\n"));
    let t = parse_str("deep", &text).unwrap();
    assert_eq!(t.stats.max_depth, n as u32);
    assert_eq!(t.stats.live_contexts_at_end, 1);
    assert_eq!(t.stats.max_live_contexts, n as u64);
    assert_eq!(t.stats.chunks_died_with_context, (n - 1) as u64);
}
