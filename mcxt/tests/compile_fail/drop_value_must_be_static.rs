struct Holds<'a>(&'a str);
impl Drop for Holds<'_> {
    fn drop(&mut self) {
        println!("{}", self.0);
    }
}
fn main() {
    let ctx = mcxt::Context::new("c");
    let s = String::from("short-lived");
    ctx.alloc_with_drop(Holds(&s));
}
