//! A deliberate bug for the sanitizers to catch: reads a chunk after it was
//! freed (`free`) or after its context was reset (`reset`); `none` makes
//! the same calls without the bad read.
//!
//! To Valgrind and ASan a freed chunk of a live block is ordinary heap
//! memory, so without mcxt's `valgrind` / `asan` features the read goes
//! unnoticed; with them, memcheck reports an invalid read and ASan a
//! use-after-poison. `scripts/sanitizers.sh` runs every combination.
//!
//! ```text
//! cargo build --example read_after_free --features valgrind
//! valgrind target/debug/examples/read_after_free free
//! ```

use mcxt::Context;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "free".into());
    let mut top = Context::new("demo");
    // SAFETY: the chunk is used while live, except for the deliberate
    // stale read below (the bug this program exists to show).
    unsafe {
        let keep = top.as_raw().alloc(128).unwrap(); // the block stays live
        let p = top.as_raw().alloc(64).unwrap();
        p.as_ptr().write_bytes(1, 64);
        match mode.as_str() {
            "free" => mcxt::raw::free(p).unwrap(),
            "reset" => top.reset(),
            _ => {}
        }
        let byte = if mode == "none" {
            0
        } else {
            std::ptr::read_volatile(p.as_ptr().add(16))
        };
        println!("{mode}: read {byte} (the block is still live)");
        if mode != "reset" {
            mcxt::raw::free(keep).unwrap();
        }
    }
}
