//! The validating parser: one line at a time, with the liveness state of
//! every context and chunk.
//!
//! State is kept in dense vectors indexed by id. Each context keeps the
//! list of its live chunks (a `Vec`, each chunk remembering its position
//! in it), so `F` is O(1) and a reset or delete costs O(chunks killed);
//! children are an intrusive doubly linked list, so deleting a subtree is
//! O(its size) and unlinking is O(1).

use std::io::BufRead;

use crate::stats::{size_bucket, TraceStats};
use crate::types::{ContextKind, CreateSpec, CtxId, Flags, Op, TraceError};
use crate::Trace;

/// Largest request allowed without the `h` flag (`MaxAllocSize`).
pub(crate) const MAX_ALLOC: u64 = (1 << 30) - 1;
/// Largest `align` value representable in [`Op::Alloc`].
pub(crate) const MAX_ALIGN: u64 = 1 << 31;
/// Lines longer than this are rejected (an implementation limit).
pub(crate) const MAX_LINE: usize = 16 << 20;
/// Most contexts or chunks one trace may have (ids are `u32`; the top
/// values are sentinels).
pub(crate) const MAX_IDS: usize = (u32::MAX - 2) as usize;
/// Upper bound of the capacity reserved from a `# ops: N` comment.
const MAX_OPS_HINT: u64 = 1 << 24;

/// "no context" in parent / sibling / child links.
const NONE: u32 = u32::MAX;
/// `ChunkState::ctx` of a chunk freed by `F`.
const FREED: u32 = u32::MAX;
/// `ChunkState::ctx` of a chunk that died with a reset or delete.
const DIED: u32 = u32::MAX - 1;

struct CtxState {
    /// Live chunks of this context.
    chunks: Vec<u32>,
    p2: u64,
    parent: u32,
    first_child: u32,
    next_sibling: u32,
    prev_sibling: u32,
    depth: u32,
    kind: ContextKind,
    alive: bool,
}

#[derive(Clone, Copy)]
struct ChunkState {
    /// Owning context, or `FREED` / `DIED`.
    ctx: u32,
    /// Position in the owning context's `chunks`.
    pos: u32,
    /// Current requested size.
    size: u64,
}

pub(crate) struct Parser {
    name: String,
    line: u64,
    ops: Vec<Op>,
    creates: Vec<CreateSpec>,
    comments: Vec<String>,
    stats: TraceStats,
    ctxs: Vec<CtxState>,
    chunks: Vec<ChunkState>,
    live_contexts: u64,
    live_chunks: u64,
    live_bytes: u128,
    stack: Vec<u32>,
}

/// Why a field is not a valid number.
enum NumError {
    /// Not a plain non-negative decimal (empty, sign, leading zero, other
    /// characters).
    Syntax,
    /// A valid decimal above `u64::MAX`.
    Overflow,
}

#[inline]
fn parse_u64(s: &[u8]) -> Result<u64, NumError> {
    if s.is_empty() || (s[0] == b'0' && s.len() > 1) {
        return Err(NumError::Syntax);
    }
    if s.len() <= 19 {
        // At most 19 digits: cannot overflow.
        let mut v: u64 = 0;
        for &b in s {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                return Err(NumError::Syntax);
            }
            v = v * 10 + u64::from(d);
        }
        return Ok(v);
    }
    parse_u64_long(s)
}

#[cold]
fn parse_u64_long(s: &[u8]) -> Result<u64, NumError> {
    let mut v: u64 = 0;
    let mut overflow = false;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return Err(NumError::Syntax);
        }
        match v.checked_mul(10).and_then(|v| v.checked_add(u64::from(d))) {
            Some(n) => v = n,
            None => overflow = true,
        }
    }
    if overflow {
        Err(NumError::Overflow)
    } else {
        Ok(v)
    }
}

/// A field for an error message: lossy UTF-8, at most 40 characters.
fn show(s: &[u8]) -> String {
    let t = String::from_utf8_lossy(s);
    if t.chars().count() > 40 {
        let mut u: String = t.chars().take(40).collect();
        u.push_str("...");
        format!("{u:?}")
    } else {
        format!("{t:?}")
    }
}

#[cold]
fn bad(what: &str, s: &[u8]) -> String {
    format!("bad {what} {}", show(s))
}

/// A number field (size, p1, ...).
#[inline]
fn num(s: &[u8], what: &str) -> Result<u64, String> {
    match parse_u64(s) {
        Ok(v) => Ok(v),
        Err(NumError::Syntax) => Err(bad(what, s)),
        Err(NumError::Overflow) => Err(format!(
            "{what} {} does not fit in 64 bits",
            String::from_utf8_lossy(s)
        )),
    }
}

/// An id field: valid syntax required; values above `u64::MAX` become
/// `u64::MAX`, which is never a valid id.
#[inline]
fn id(s: &[u8], what: &str) -> Result<u64, String> {
    match parse_u64(s) {
        Ok(v) => Ok(v),
        Err(NumError::Syntax) => Err(bad(what, s)),
        Err(NumError::Overflow) => Ok(u64::MAX),
    }
}

#[inline]
fn flags(s: &[u8], size: u64, what: char) -> Result<Flags, String> {
    let f = Flags::parse(s).ok_or_else(|| format!("bad {what} flags {}", show(s)))?;
    if size > MAX_ALLOC && !f.huge() {
        return Err(format!("{what} of {size} bytes without the h flag"));
    }
    Ok(f)
}

/// Splits `line` at single spaces into at most `limit` fields (the last
/// one takes the rest of the line). Returns the number of fields.
#[inline]
fn split<'a>(line: &'a [u8], out: &mut [&'a [u8]; 8], limit: usize) -> usize {
    let mut n = 0;
    let mut start = 0;
    for (i, &b) in line.iter().enumerate() {
        if b == b' ' {
            out[n] = &line[start..i];
            n += 1;
            start = i + 1;
            if n == limit - 1 {
                break;
            }
        }
    }
    out[n] = &line[start..];
    n + 1
}

impl Parser {
    pub(crate) fn new(name: &str) -> Parser {
        Parser {
            name: name.to_owned(),
            line: 0,
            ops: Vec::new(),
            creates: Vec::new(),
            comments: Vec::new(),
            stats: TraceStats::default(),
            ctxs: Vec::new(),
            chunks: Vec::new(),
            live_contexts: 0,
            live_chunks: 0,
            live_bytes: 0,
            stack: Vec::new(),
        }
    }

    fn error(&self, line: u64, reason: String) -> TraceError {
        TraceError {
            file: self.name.clone(),
            line,
            reason,
        }
    }

    /// Reads every line of `r` (already decompressed).
    pub(crate) fn run<R: BufRead>(&mut self, mut r: R) -> Result<(), TraceError> {
        let mut partial: Vec<u8> = Vec::new();
        loop {
            let buf = match r.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.error(self.line + 1, format!("read error: {e}"))),
            };
            if buf.is_empty() {
                break;
            }
            let len = buf.len();
            let mut start = 0;
            if !partial.is_empty() {
                match find_newline(buf) {
                    Some(i) => {
                        if partial.len() + i > MAX_LINE {
                            return Err(self.too_long());
                        }
                        partial.extend_from_slice(&buf[..i]);
                        self.feed(&partial)?;
                        partial.clear();
                        start = i + 1;
                    }
                    None => {
                        if partial.len() + len > MAX_LINE {
                            return Err(self.too_long());
                        }
                        partial.extend_from_slice(buf);
                        r.consume(len);
                        continue;
                    }
                }
            }
            while let Some(i) = find_newline(&buf[start..]) {
                self.feed(&buf[start..start + i])?;
                start += i + 1;
            }
            if len - start > MAX_LINE {
                return Err(self.too_long());
            }
            partial.extend_from_slice(&buf[start..]);
            r.consume(len);
        }
        if !partial.is_empty() {
            return Err(self.error(self.line + 1, "missing final newline".into()));
        }
        if self.line == 0 {
            return Err(self.error(
                1,
                "empty input: expected the header line 'mcxt-trace 1'".into(),
            ));
        }
        Ok(())
    }

    fn too_long(&self) -> TraceError {
        self.error(
            self.line + 1,
            format!("line longer than {} MiB", MAX_LINE >> 20),
        )
    }

    /// One line, without its `\n`.
    #[inline]
    fn feed(&mut self, line: &[u8]) -> Result<(), TraceError> {
        self.line += 1;
        let r = if self.line == 1 {
            if line == b"mcxt-trace 1" {
                Ok(())
            } else {
                Err(format!("expected 'mcxt-trace 1', got {}", show(line)))
            }
        } else {
            self.op_line(line)
        };
        r.map_err(|reason| self.error(self.line, reason))
    }

    #[inline]
    fn op_line(&mut self, line: &[u8]) -> Result<(), String> {
        let mut f: [&[u8]; 8] = [&[]; 8];
        match line.first() {
            Some(b'#') => return self.comment(&line[1..]),
            Some(b'C') => {
                let n = split(line, &mut f, 8);
                if f[0] != b"C" {
                    return Err(unknown_op(line));
                }
                return self.create(&f, n);
            }
            _ => {}
        }
        let n = split(line, &mut f, 7);
        if f[0].len() != 1 {
            return Err(unknown_op(line));
        }
        match f[0][0] {
            b'A' => self.alloc(&f, n),
            b'F' => self.free(&f, n),
            b'R' => self.realloc(&f, n),
            c @ (b'X' | b'O' | b'H' | b'D') => {
                if n != 2 {
                    return Err(format!("{} needs 1 field", c as char));
                }
                let ctx = self.live_ctx(f[1], "context")?;
                match c {
                    b'X' => {
                        self.delete_children(ctx);
                        self.kill_chunks(ctx, false);
                        self.stats.ops.reset += 1;
                        self.ops.push(Op::Reset { ctx });
                    }
                    b'O' => {
                        self.kill_chunks(ctx, false);
                        self.stats.ops.reset_only += 1;
                        self.ops.push(Op::ResetOnly { ctx });
                    }
                    b'H' => {
                        self.delete_children(ctx);
                        self.stats.ops.delete_children += 1;
                        self.ops.push(Op::DeleteChildren { ctx });
                    }
                    _ => {
                        self.delete(ctx);
                        self.stats.ops.delete += 1;
                        self.ops.push(Op::Delete { ctx });
                    }
                }
                Ok(())
            }
            b'P' => self.set_parent(&f, n),
            _ => Err(unknown_op(line)),
        }
    }

    fn comment(&mut self, text: &[u8]) -> Result<(), String> {
        let text =
            std::str::from_utf8(text).map_err(|e| format!("comment is not valid UTF-8 ({e})"))?;
        if self.ops.is_empty() {
            // "# ops: N (...)": reserve room for the operations.
            if let Some(rest) = text.strip_prefix(" ops: ") {
                let digits = rest.split(' ').next().unwrap_or("");
                if let Ok(n) = parse_u64(digits.as_bytes()) {
                    let n = n.min(MAX_OPS_HINT) as usize;
                    self.ops.reserve(n);
                }
            }
        }
        self.stats.comments += 1;
        self.comments.push(text.to_owned());
        Ok(())
    }

    /// A context id that must be live; returns its dense id.
    #[inline]
    fn live_ctx(&self, s: &[u8], what: &str) -> Result<CtxId, String> {
        let v = id(
            s,
            if what == "parent" {
                "parent id"
            } else {
                "context id"
            },
        )?;
        if v == 0 || v > self.ctxs.len() as u64 {
            return Err(format!(
                "{what} {} is not a live context (never created)",
                String::from_utf8_lossy(s)
            ));
        }
        let c = (v - 1) as u32;
        if !self.ctxs[c as usize].alive {
            return Err(format!(
                "{what} {} is not a live context (deleted)",
                String::from_utf8_lossy(s)
            ));
        }
        Ok(c)
    }

    /// A chunk id that must be live; returns its dense id.
    #[inline]
    fn live_chunk(&self, s: &[u8]) -> Result<u32, String> {
        let v = id(s, "chunk id")?;
        if v == 0 || v > self.chunks.len() as u64 {
            return Err(format!(
                "chunk {} is not live (never allocated)",
                String::from_utf8_lossy(s)
            ));
        }
        let k = (v - 1) as u32;
        match self.chunks[k as usize].ctx {
            FREED => Err(format!("chunk {v} is not live (freed by F)")),
            DIED => Err(format!(
                "chunk {v} is not live (died with a reset or delete of its context)"
            )),
            _ => Ok(k),
        }
    }

    fn create(&mut self, f: &[&[u8]; 8], n: usize) -> Result<(), String> {
        if n != 8 || f[7].is_empty() {
            return Err("C needs 7 fields (ctx parent kind p1 p2 p3 name)".into());
        }
        let expected = self.ctxs.len() as u64 + 1;
        let v = id(f[1], "context id")?;
        if v != expected {
            return Err(format!(
                "context id {}, expected {expected}",
                String::from_utf8_lossy(f[1])
            ));
        }
        if self.ctxs.len() >= MAX_IDS {
            return Err(format!("too many contexts (at most {MAX_IDS})"));
        }
        let parent = if f[2] == b"-" {
            None
        } else {
            Some(self.live_ctx(f[2], "parent")?)
        };
        let kind = ContextKind::from_bytes(f[3]).ok_or_else(|| {
            format!(
                "bad kind {} (expected aset, generation, slab or bump)",
                show(f[3])
            )
        })?;
        let p1 = num(f[4], "p1")?;
        let p2 = num(f[5], "p2")?;
        let p3 = num(f[6], "p3")?;
        if kind == ContextKind::Slab {
            if p3 != 0 {
                return Err(format!("slab p3 must be 0, got {p3}"));
            }
            if p2 == 0 {
                return Err("slab chunkSize (p2) is 0".into());
            }
        }
        let name = std::str::from_utf8(f[7])
            .map_err(|e| format!("context name is not valid UTF-8 ({e})"))?
            .to_owned();
        let ctx = self.ctxs.len() as u32;
        let depth = match parent {
            Some(p) => self.ctxs[p as usize].depth.saturating_add(1),
            None => 1,
        };
        self.ctxs.push(CtxState {
            chunks: Vec::new(),
            p2,
            parent: NONE,
            first_child: NONE,
            next_sibling: NONE,
            prev_sibling: NONE,
            depth,
            kind,
            alive: true,
        });
        if let Some(p) = parent {
            self.link(ctx, p);
        }
        let spec = self.creates.len() as u32;
        self.creates.push(CreateSpec {
            kind,
            p1,
            p2,
            p3,
            name,
        });
        self.live_contexts += 1;
        let st = &mut self.stats;
        st.max_depth = st.max_depth.max(depth);
        st.max_live_contexts = st.max_live_contexts.max(self.live_contexts);
        *st.contexts_by_kind.get_mut(kind) += 1;
        st.ops.create += 1;
        self.ops.push(Op::Create {
            ctx,
            parent,
            kind,
            spec,
        });
        Ok(())
    }

    #[inline]
    fn alloc(&mut self, f: &[&[u8]; 8], n: usize) -> Result<(), String> {
        if n != 5 && n != 6 {
            return Err("A needs 4 or 5 fields (chunk ctx size flags [align])".into());
        }
        let expected = self.chunks.len() as u64 + 1;
        let v = id(f[1], "chunk id")?;
        if v != expected {
            return Err(format!(
                "chunk id {}, expected {expected}",
                String::from_utf8_lossy(f[1])
            ));
        }
        if self.chunks.len() >= MAX_IDS {
            return Err(format!("too many chunks (at most {MAX_IDS})"));
        }
        let ctx = self.live_ctx(f[2], "context")?;
        let size = num(f[3], "size")?;
        let fl = flags(f[4], size, 'A')?;
        let c = &mut self.ctxs[ctx as usize];
        let mut align = 0;
        if n == 6 {
            let al = num(f[5], "align")?;
            if !al.is_power_of_two() {
                return Err(format!("align {al} is not a power of two"));
            }
            if c.kind == ContextKind::Slab {
                return Err("aligned allocation in a slab context".into());
            }
            if al > MAX_ALIGN {
                return Err(format!(
                    "align {al} is larger than {MAX_ALIGN} (not supported)"
                ));
            }
            align = al as u32;
            self.stats.aligned_allocs += 1;
        }
        if c.kind == ContextKind::Slab && size != c.p2 {
            return Err(format!("slab allocation of {size}, chunkSize is {}", c.p2));
        }
        let chunk = self.chunks.len() as u32;
        let pos = c.chunks.len() as u32;
        c.chunks.push(chunk);
        let kind = c.kind;
        self.chunks.push(ChunkState { ctx, pos, size });
        self.live_chunks += 1;
        self.live_bytes += u128::from(size);
        let st = &mut self.stats;
        st.max_live_bytes = st.max_live_bytes.max(self.live_bytes);
        st.max_live_chunks = st.max_live_chunks.max(self.live_chunks);
        st.bytes_requested += u128::from(size);
        st.size_histogram[size_bucket(size)] += 1;
        *st.allocs_by_kind.get_mut(kind) += 1;
        st.flag_zero += u64::from(fl.zero());
        st.flag_huge += u64::from(fl.huge());
        st.flag_no_oom += u64::from(fl.no_oom());
        st.ops.alloc += 1;
        self.ops.push(Op::Alloc {
            chunk,
            ctx,
            size,
            flags: fl,
            align,
        });
        Ok(())
    }

    #[inline]
    fn free(&mut self, f: &[&[u8]; 8], n: usize) -> Result<(), String> {
        if n != 2 {
            return Err("F needs 1 field (chunk)".into());
        }
        let chunk = self.live_chunk(f[1])?;
        let ChunkState { ctx, pos, size } = self.chunks[chunk as usize];
        let c = &mut self.ctxs[ctx as usize];
        if c.kind == ContextKind::Bump {
            return Err(format!("F of a chunk in bump context {}", ctx as u64 + 1));
        }
        c.chunks.swap_remove(pos as usize);
        if let Some(&moved) = c.chunks.get(pos as usize) {
            self.chunks[moved as usize].pos = pos;
        }
        self.chunks[chunk as usize].ctx = FREED;
        self.live_chunks -= 1;
        self.live_bytes -= u128::from(size);
        self.stats.ops.free += 1;
        self.ops.push(Op::Free { chunk });
        Ok(())
    }

    fn realloc(&mut self, f: &[&[u8]; 8], n: usize) -> Result<(), String> {
        if n != 3 && n != 4 {
            return Err("R needs 2 or 3 fields (chunk size [flags])".into());
        }
        let chunk = self.live_chunk(f[1])?;
        let size = num(f[2], "size")?;
        let fl = if n == 4 {
            flags(f[3], size, 'R')?
        } else if size > MAX_ALLOC {
            return Err(format!("R of {size} bytes without the h flag"));
        } else {
            Flags::EMPTY
        };
        let st = &mut self.chunks[chunk as usize];
        let c = &self.ctxs[st.ctx as usize];
        match c.kind {
            ContextKind::Bump => {
                return Err(format!(
                    "R of a chunk in bump context {}",
                    st.ctx as u64 + 1
                ))
            }
            ContextKind::Slab if size != c.p2 => {
                return Err(format!("slab repalloc to {size}, chunkSize is {}", c.p2))
            }
            _ => {}
        }
        self.live_bytes = self.live_bytes - u128::from(st.size) + u128::from(size);
        st.size = size;
        self.stats.max_live_bytes = self.stats.max_live_bytes.max(self.live_bytes);
        self.stats.bytes_repalloc += u128::from(size);
        self.stats.ops.realloc += 1;
        self.ops.push(Op::Realloc {
            chunk,
            size,
            flags: fl,
        });
        Ok(())
    }

    fn set_parent(&mut self, f: &[&[u8]; 8], n: usize) -> Result<(), String> {
        if n != 3 {
            return Err("P needs 2 fields (ctx parent)".into());
        }
        let ctx = self.live_ctx(f[1], "context")?;
        let parent = if f[2] == b"-" {
            None
        } else {
            let p = self.live_ctx(f[2], "parent")?;
            let mut x = p;
            while x != NONE {
                if x == ctx {
                    return Err(format!(
                        "P would create a cycle: context {} is {} or one of its descendants",
                        p as u64 + 1,
                        ctx as u64 + 1
                    ));
                }
                x = self.ctxs[x as usize].parent;
            }
            Some(p)
        };
        self.unlink(ctx);
        let base = match parent {
            Some(p) => {
                self.link(ctx, p);
                self.ctxs[p as usize].depth.saturating_add(1)
            }
            None => 1,
        };
        // Recompute the depths of the moved subtree.
        let mut stack = vec![(ctx, base)];
        while let Some((x, d)) = stack.pop() {
            let c = &mut self.ctxs[x as usize];
            c.depth = d;
            self.stats.max_depth = self.stats.max_depth.max(d);
            let mut ch = c.first_child;
            while ch != NONE {
                stack.push((ch, d.saturating_add(1)));
                ch = self.ctxs[ch as usize].next_sibling;
            }
        }
        self.stats.ops.set_parent += 1;
        self.ops.push(Op::SetParent { ctx, parent });
        Ok(())
    }

    /// Makes `c` (currently unlinked) the first child of `p`.
    fn link(&mut self, c: u32, p: u32) {
        let first = self.ctxs[p as usize].first_child;
        if first != NONE {
            self.ctxs[first as usize].prev_sibling = c;
        }
        self.ctxs[p as usize].first_child = c;
        let s = &mut self.ctxs[c as usize];
        s.parent = p;
        s.prev_sibling = NONE;
        s.next_sibling = first;
    }

    /// Removes `c` from its parent's children (no-op for a root).
    fn unlink(&mut self, c: u32) {
        let s = &mut self.ctxs[c as usize];
        let (p, prev, next) = (s.parent, s.prev_sibling, s.next_sibling);
        s.parent = NONE;
        s.prev_sibling = NONE;
        s.next_sibling = NONE;
        if p == NONE {
            return;
        }
        if prev != NONE {
            self.ctxs[prev as usize].next_sibling = next;
        } else {
            self.ctxs[p as usize].first_child = next;
        }
        if next != NONE {
            self.ctxs[next as usize].prev_sibling = prev;
        }
    }

    /// Kills every live chunk of `c`. `release` frees the list's memory
    /// (for deleted contexts); otherwise its capacity is kept for reuse.
    fn kill_chunks(&mut self, c: u32, release: bool) {
        let mut list = std::mem::take(&mut self.ctxs[c as usize].chunks);
        if !list.is_empty() {
            for &k in &list {
                let st = &mut self.chunks[k as usize];
                st.ctx = DIED;
                self.live_bytes -= u128::from(st.size);
            }
            let n = list.len() as u64;
            self.live_chunks -= n;
            self.stats.chunks_died_with_context += n;
            list.clear();
        }
        if !release {
            self.ctxs[c as usize].chunks = list;
        }
    }

    /// Deletes the subtrees on `self.stack`, which must already be
    /// detached from (or whose parent is about to forget) them.
    fn delete_stacked(&mut self) {
        while let Some(x) = self.stack.pop() {
            let mut ch = self.ctxs[x as usize].first_child;
            while ch != NONE {
                self.stack.push(ch);
                ch = self.ctxs[ch as usize].next_sibling;
            }
            self.kill_chunks(x, true);
            let s = &mut self.ctxs[x as usize];
            s.alive = false;
            s.first_child = NONE;
            s.parent = NONE;
            s.next_sibling = NONE;
            s.prev_sibling = NONE;
            self.live_contexts -= 1;
        }
    }

    /// `H`: deletes every descendant of `c`.
    fn delete_children(&mut self, c: u32) {
        let mut ch = self.ctxs[c as usize].first_child;
        if ch == NONE {
            return;
        }
        while ch != NONE {
            self.stack.push(ch);
            ch = self.ctxs[ch as usize].next_sibling;
        }
        self.ctxs[c as usize].first_child = NONE;
        self.delete_stacked();
    }

    /// `D`: deletes `c` and every descendant.
    fn delete(&mut self, c: u32) {
        self.unlink(c);
        self.stack.push(c);
        self.delete_stacked();
    }

    pub(crate) fn finish(self) -> Trace {
        let mut stats = self.stats;
        stats.contexts_created = self.ctxs.len() as u64;
        stats.chunks_allocated = self.chunks.len() as u64;
        stats.chunks_freed = stats.ops.free;
        stats.live_contexts_at_end = self.live_contexts;
        stats.live_chunks_at_end = self.live_chunks;
        stats.live_bytes_at_end = self.live_bytes;
        let mut ops = self.ops;
        ops.shrink_to_fit();
        Trace {
            name: self.name,
            ops,
            creates: self.creates,
            n_contexts: self.ctxs.len() as u32,
            n_chunks: self.chunks.len() as u32,
            comments: self.comments,
            stats,
        }
    }
}

#[inline]
fn find_newline(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

#[cold]
fn unknown_op(line: &[u8]) -> String {
    if line.is_empty() {
        return "empty line (expected an operation or a # comment)".into();
    }
    let end = line.len().min(20);
    format!("unknown op {}", show(&line[..end]))
}
