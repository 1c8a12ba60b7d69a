fn main() {
    let ctx = mcxt::Context::new("c");
    std::thread::spawn(move || drop(ctx));
}
