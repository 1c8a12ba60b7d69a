fn main() {
    let s;
    {
        let ctx = mcxt::Context::new("c");
        s = ctx.alloc_str("gone");
    }
    println!("{s}");
}
