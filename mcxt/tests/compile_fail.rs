//! The lifetime rules of the safe API, proven by programs that must not
//! compile.

#[test]
#[cfg_attr(miri, ignore = "runs rustc")]
fn lifetime_rules() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
}
