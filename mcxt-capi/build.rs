//! Compiles the C half of the library (`src/capi.c`: the exported
//! functions, the thread-local context variables and the error handler)
//! and makes `libmcxt.so` export exactly the symbols `include/mcxt.h`
//! declares, besides the internal `mcxt__*` entry points of the Rust half.

#[path = "src/symbols.rs"]
#[allow(dead_code)]
mod symbols;

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let header = manifest.join("include/mcxt.h");
    println!("cargo:rerun-if-changed=src/capi.c");
    println!("cargo:rerun-if-changed=src/symbols.rs");
    println!("cargo:rerun-if-changed=include/mcxt.h");

    let mut build = cc::Build::new();
    // TLS descriptors make `CurrentMemoryContext` cheap to read from the
    // shared library (no `__tls_get_addr` call on the fast path).
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("x86_64") {
        build.flag_if_supported("-mtls-dialect=gnu2");
    }
    build
        .file(manifest.join("src/capi.c"))
        .include(manifest.join("include"))
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .cargo_metadata(false)
        .compile("mcxt_capi_c");
    println!("cargo:rustc-link-search=native={}", out.display());
    // Whole archive: nothing in Rust calls the C functions, and they must
    // all end up in libmcxt.so and libmcxt.a.
    println!("cargo:rustc-link-lib=static:+whole-archive=mcxt_capi_c");

    // rustc's version script for a cdylib exports only Rust's `no_mangle`
    // items; a second one adds the C half (GNU ld and lld merge them).
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if matches!(
        target_os.as_str(),
        "linux" | "android" | "freebsd" | "netbsd" | "openbsd" | "dragonfly" | "illumos"
    ) {
        let text = fs::read_to_string(&header).expect("read include/mcxt.h");
        let mut map = String::from("{\n  global:\n");
        for (name, _) in symbols::declared_symbols(&text) {
            writeln!(map, "    {name};").expect("write to a String");
        }
        map.push_str("};\n");
        let map_path = out.join("mcxt.map");
        fs::write(&map_path, map).expect("write the version script");
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
            map_path.display()
        );
        // Calls from the C half to the Rust half stay inside the library.
        println!("cargo:rustc-cdylib-link-arg=-Wl,-Bsymbolic-functions");
    } else {
        println!(
            "cargo:warning=libmcxt.so exports only the internal entry points on {target_os}: \
             add the symbols of include/mcxt.h to the linker's export list"
        );
    }
}
