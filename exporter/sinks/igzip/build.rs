//! Checks, at build time, that the system ISA-L header has the stream
//! layout the bindings assume (`layout_check.c`): a mismatch is a build
//! error, never a heap overflow at run time.

fn main() {
    println!("cargo:rerun-if-changed=layout_check.c");
    println!("cargo:rerun-if-changed=build.rs");
    cc::Build::new()
        .file("layout_check.c")
        .warnings(true)
        .compile("flowscribe_igzip_layout_check");
}
