fn main() {
    let mut top = mcxt::Context::new("top");
    let child = top.new_child("child");
    top.reset();
    drop(child);
}
