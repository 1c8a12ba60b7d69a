//! The safe API: handles, values, boxes, drops, collections, current
//! context, critical sections.

use allocator_api2::vec::Vec as AVec;
use mcxt::{AllocSetSizes, Context, CriticalSection, ErrorKind};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

#[test]
fn values_slices_and_strings_live_in_the_context() {
    let mut ctx = Context::new("values");
    let a = ctx.alloc(41u64);
    *a += 1;
    let s = ctx.alloc_str("héllo");
    let v = ctx.alloc_slice_copy(&[1u16, 2, 3]);
    let w = ctx.alloc_slice_fill_with(5, |i| i * i);
    let big = ctx.alloc([7u8; 20_000]);
    assert_eq!(
        (*a, &*s, &*v, &*w),
        (42, "héllo", &[1u16, 2, 3][..], &[0, 1, 4, 9, 16][..])
    );
    assert!(big.iter().all(|&b| b == 7));
    let held = ctx.mem_allocated(false);
    assert!(held > 20_000);
    ctx.reset();
    assert_eq!(ctx.mem_allocated(false), 8192, "header and first block");
    assert!(ctx.is_empty());
}

#[test]
fn over_aligned_values_are_aligned() {
    #[repr(align(64))]
    struct Line([u8; 64]);
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    let ctx = Context::new("aligned");
    for _ in 0..10 {
        let l = ctx.alloc(Line([1; 64]));
        assert_eq!(l as *mut Line as usize % 64, 0);
        let p = ctx.alloc(Page([2; 4096]));
        assert_eq!(p as *mut Page as usize % 4096, 0);
        assert_eq!(l.0[63] + p.0[4095], 3);
    }
}

#[test]
fn children_borrow_parents_and_drop_deletes() {
    let top = Context::new("top");
    let before = top.mem_allocated(true);
    {
        let child = top.new_child("child");
        let grandchild = child.new_child("grandchild");
        grandchild.alloc([0u8; 100]);
        // Two headers and the grandchild's first block.
        assert!(top.mem_allocated(true) > before + 8192);
        assert_eq!(top.stats().contexts.len(), 3);
    }
    assert_eq!(top.mem_allocated(true), before);
    assert_eq!(top.stats().contexts.len(), 1);
}

#[test]
fn pbox_drops_value_and_frees_chunk() {
    let dropped = Rc::new(Cell::new(0));
    struct D(Rc<Cell<i32>>);
    impl Drop for D {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }
    let ctx = Context::new("boxes");
    let b = ctx.boxed(D(dropped.clone()));
    let addr = &*b as *const D as usize;
    drop(b);
    assert_eq!(dropped.get(), 1);
    // The chunk is on the free list: the next box of that size reuses it.
    let b2 = ctx.boxed(D(dropped.clone()));
    assert_eq!(&*b2 as *const D as usize, addr);
    let inner = mcxt::PBox::into_inner(b2);
    assert_eq!(dropped.get(), 1);
    drop(inner);
    assert_eq!(dropped.get(), 2);
    let leaked = mcxt::PBox::leak(ctx.boxed(5u32));
    *leaked += 1;
    assert_eq!(*leaked, 6);
    assert_eq!(format!("{:?} {}", ctx.boxed(1), ctx.boxed("x")), "1 x");
}

#[test]
fn drop_values_run_at_reset_newest_first_children_first() {
    let log = Rc::new(RefCell::new(Vec::new()));
    struct Noisy(&'static str, Rc<RefCell<Vec<&'static str>>>);
    impl Drop for Noisy {
        fn drop(&mut self) {
            self.1.borrow_mut().push(self.0);
        }
    }
    let mut top = Context::new("top");
    top.alloc_with_drop(Noisy("first", log.clone()));
    top.alloc_with_drop(Noisy("second", log.clone()));
    let child = top.new_child("child");
    child.alloc_with_drop(Noisy("child", log.clone()));
    child.leak_into_parent();
    let l = log.clone();
    top.on_reset(move || l.borrow_mut().push("callback"));
    top.reset();
    assert_eq!(*log.borrow(), ["child", "callback", "second", "first"]);
    log.borrow_mut().clear();
    top.alloc_with_drop(Noisy("at drop", log.clone()));
    drop(top);
    assert_eq!(*log.borrow(), ["at drop"]);
}

#[test]
fn reparent_detach_and_leak_into_parent() {
    let a = Context::new("a");
    let b = Context::new("b");
    let c = a.new_child("c");
    let c = c.reparent(&b).map_err(|(_, e)| e).unwrap();
    assert_eq!(b.stats().contexts.len(), 2);
    assert_eq!(a.stats().contexts.len(), 1);
    let c = c.detach();
    assert_eq!(b.stats().contexts.len(), 1);
    drop(a);
    assert_eq!(c.name(), "c");
    // A limit on the new parent refuses the move and hands the context back.
    b.set_limit(Some(b.mem_allocated(true)));
    let (c, err) = c.reparent(&b).unwrap_err();
    assert!(matches!(err.kind, ErrorKind::LimitExceeded { .. }));
    assert_eq!(c.name(), "c");
}

#[test]
fn idents_and_debug() {
    let mut ctx = Context::new("plan");
    assert_eq!(ctx.ident(), None);
    ctx.set_ident(Some("SELECT 42"));
    assert_eq!(ctx.ident(), Some("SELECT 42"));
    assert!(format!("{ctx:?}").contains("SELECT 42"));
    assert!(ctx.stats_text().starts_with("plan: "));
    assert!(
        ctx.stats_text().contains(" total in 0 blocks;"),
        "an unused context has no block"
    );
    assert!(ctx
        .stats_text()
        .lines()
        .next()
        .unwrap()
        .ends_with(": SELECT 42"));
    ctx.set_ident(None);
    assert_eq!(ctx.ident(), None);
}

#[test]
fn collections_in_a_context() {
    let ctx = Context::new("collections");
    let mut v: AVec<u64, &Context> = AVec::new_in(&ctx);
    for i in 0..10_007 {
        v.push(i);
    }
    v.shrink_to_fit();
    assert_eq!(v.iter().sum::<u64>(), 10_007 * 10_006 / 2);
    let mut m = hashbrown::HashMap::new_in(&ctx);
    for i in 0..1000 {
        m.insert(i, i.to_string());
    }
    assert_eq!(m[&999], "999");
    let with_cap = ctx.mem_allocated(false);
    drop(m);
    drop(v);
    let after = ctx.mem_allocated(false);
    assert!(
        after < with_cap / 2,
        "dedicated blocks went back: {with_cap} -> {after}"
    );
    // Zeroed growth and zero-sized types.
    let mut z: AVec<u8, &Context> = AVec::new_in(&ctx);
    z.resize(10_000, 0);
    assert!(z.iter().all(|&b| b == 0));
    let mut units: AVec<(), &Context> = AVec::new_in(&ctx);
    units.push(());
    assert_eq!(units.len(), 1);
}

#[test]
fn allocator_grow_changes_alignment_when_asked() {
    use allocator_api2::alloc::Allocator;
    use std::alloc::Layout;
    let ctx = Context::new("grow");
    let a = &ctx;
    let old = Layout::from_size_align(24, 8).unwrap();
    let new = Layout::from_size_align(200, 256).unwrap();
    let p = a.allocate(old).unwrap().cast::<u8>();
    // SAFETY: p is a live allocation of `old`, then of `new`.
    unsafe {
        p.as_ptr().write_bytes(9, 24);
        let q = a.grow(p, old, new).unwrap().cast::<u8>();
        assert_eq!(q.as_ptr() as usize % 256, 0);
        assert_eq!(*q.as_ptr().add(23), 9);
        let r = a
            .shrink(q, new, Layout::from_size_align(16, 512).unwrap())
            .unwrap()
            .cast::<u8>();
        assert_eq!(r.as_ptr() as usize % 512, 0);
        assert_eq!(*r.as_ptr().add(15), 9);
        a.deallocate(r, Layout::from_size_align(16, 512).unwrap());
    }
}

#[test]
fn current_context_follows_guards() {
    let outer = Context::new("outer");
    let inner = Context::new("inner");
    assert_eq!(mcxt::current(), None);
    assert_eq!(
        mcxt::palloc(8).unwrap_err().kind,
        ErrorKind::NoCurrentContext
    );
    {
        let _g = outer.switch_to();
        let p = mcxt::palloc(16).unwrap();
        // SAFETY: a live chunk.
        assert_eq!(
            unsafe { mcxt::raw::chunk_context(p) }.unwrap(),
            outer.as_raw()
        );
        {
            let _g2 = inner.switch_to();
            let z = mcxt::palloc0(32).unwrap();
            // SAFETY: a live 32-byte chunk.
            unsafe {
                assert!((0..32).all(|i| *z.as_ptr().add(i) == 0));
                assert_eq!(mcxt::raw::chunk_context(z).unwrap(), inner.as_raw());
            }
            let a = mcxt::palloc_aligned(10, 128, mcxt::AllocFlags::empty())
                .unwrap()
                .unwrap();
            assert_eq!(a.as_ptr() as usize % 128, 0);
            assert!(mcxt::palloc_extended(1 << 31, mcxt::AllocFlags::NO_OOM).is_err());
        }
        assert_eq!(mcxt::current(), Some(outer.as_raw()));
    }
    assert_eq!(mcxt::current(), None);
}

#[test]
fn switch_guard_restores_during_unwinding() {
    let ctx = Context::new("panicky");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _g = ctx.switch_to();
        panic!("boom");
    }));
    assert!(r.is_err());
    assert_eq!(mcxt::current(), None);
}

#[test]
fn critical_sections_nest_and_allowance_is_inherited() {
    let ctx = Context::new("normal");
    let errors = Context::new("ErrorContext");
    errors.allow_in_critical_section(true);
    let errors_child = errors.new_child("inherits");
    let warm = ctx.boxed(0u64); // a chunk on the free list after drop
    drop(warm);
    {
        let _a = CriticalSection::enter();
        {
            let _b = CriticalSection::enter();
            assert!(CriticalSection::is_active());
        }
        assert!(CriticalSection::is_active());
        let e = ctx.try_alloc_bytes(8).unwrap_err();
        assert_eq!(e.kind, ErrorKind::CriticalSection);
        assert!(e.to_string().contains("\"normal\""));
        assert!(ctx.try_new_child("nope", AllocSetSizes::SMALL).is_err());
        assert!(errors.try_alloc_bytes(64).is_ok());
        assert!(errors_child.try_alloc_bytes(64).is_ok());
        // Other threads are not affected.
        std::thread::spawn(|| Context::new("elsewhere").alloc(1u8).to_owned())
            .join()
            .unwrap();
    }
    assert!(!CriticalSection::is_active());
    assert!(ctx.try_alloc_bytes(8).is_ok());
}

#[test]
fn try_forms_report_errors_instead_of_panicking() {
    let ctx = Context::new("bounded");
    ctx.set_limit(Some(ctx.mem_allocated(true)));
    let (v, e) = ctx.try_alloc([0u8; 10_000]).unwrap_err();
    assert_eq!(v.len(), 10_000);
    assert_eq!(e.size, 10_000);
    assert!(ctx.try_new_child("c", AllocSetSizes::DEFAULT).is_err());
    let bad = AllocSetSizes {
        min_context_size: 0,
        init_block_size: 10,
        max_block_size: 10,
    };
    assert!(matches!(
        Context::try_new("bad", bad).unwrap_err().kind,
        ErrorKind::InvalidParameters(_)
    ));
}

#[cfg(feature = "serde")]
#[test]
fn stats_serialize() {
    let ctx = Context::new("json");
    let json = serde_json::to_string(&ctx.stats()).unwrap();
    assert!(json.contains("\"name\":\"json\""), "{json}");
    assert!(json.contains("\"kind\":\"AllocSet\""), "{json}");
}

#[test]
fn bump_context_allocates_without_a_kind_test_and_behaves_as_a_context() {
    use mcxt::{BlockSizes, BumpContext};
    let top = Context::new("top");
    let mut b = BumpContext::try_new_child(&top, "rows", BlockSizes::DEFAULT).unwrap();
    assert_eq!(b.kind(), mcxt::ContextKind::Bump);
    let base = b.mem_allocated(false);
    let x = b.alloc(7u64);
    let s = b.alloc_str("héllo");
    let v = b.alloc_slice_copy(&[1u16, 2, 3]);
    *x += 1;
    assert_eq!((*x, &*s, &*v), (8, "héllo", &[1u16, 2, 3][..]));
    // No header: consecutive 8-byte chunks are 8 bytes apart.
    let p = b.try_alloc_bytes(8).unwrap().as_ptr() as usize;
    let q = b.try_alloc_bytes(8).unwrap().as_ptr() as usize;
    if !cfg!(feature = "checking") {
        assert_eq!(q - p, 8);
    }
    // Over-aligned layouts and the general API work through the context.
    let l = std::alloc::Layout::from_size_align(100, 256).unwrap();
    assert_eq!(b.try_alloc_layout(l).unwrap().as_ptr() as usize % 256, 0);
    assert_eq!(
        b.try_alloc_bytes(mcxt::MAX_ALLOC_SIZE + 1)
            .unwrap_err()
            .kind,
        ErrorKind::InvalidSize
    );
    b.set_limit(Some(b.mem_allocated(true)));
    assert!(b.try_alloc(vec![0u8; 0]).is_ok(), "fits in the first block");
    assert!(matches!(
        b.try_alloc_bytes(1 << 20).unwrap_err().kind,
        ErrorKind::LimitExceeded { .. }
    ));
    b.set_limit(None);
    b.set_ident(Some("batch 1"));
    assert!(b.stats_text().contains(": batch 1"), "{}", b.stats_text());
    assert!(top.mem_allocated(true) > b.mem_allocated(true));
    b.reset();
    assert_eq!(b.mem_allocated(false), base);
    assert!(b.is_empty());
    let plain: Context<'_> = b.into_context();
    assert_eq!(plain.kind(), mcxt::ContextKind::Bump);
    drop(plain);
    assert_eq!(
        top.mem_allocated(true),
        top.mem_allocated(false),
        "the child is gone"
    );
}
