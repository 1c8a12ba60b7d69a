fn main() {
    let guard;
    {
        let ctx = mcxt::Context::new("c");
        guard = ctx.switch_to();
    }
    drop(guard);
}
