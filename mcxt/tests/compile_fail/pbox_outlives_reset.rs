fn main() {
    let mut ctx = mcxt::Context::new("c");
    let b = ctx.boxed(String::from("x"));
    ctx.reset();
    drop(b);
}
