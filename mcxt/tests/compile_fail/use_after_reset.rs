fn main() {
    let mut ctx = mcxt::Context::new("c");
    let x = ctx.alloc(1u32);
    ctx.reset();
    *x += 1;
}
