fn main() {
    let top = mcxt::Context::new("top");
    let child = top.new_child("child");
    drop(top);
    drop(child);
}
