fn main() {
    let v;
    {
        let ctx = mcxt::Context::new("c");
        let mut w = allocator_api2::vec::Vec::new_in(&ctx);
        w.push(1u8);
        v = w;
    }
    drop(v);
}
