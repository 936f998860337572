//! Only for the static musl build: links promdrop's own memcpy, memmove,
//! memset, memcmp and bcmp ahead of musl's (see `src/musl_mem.c` for why).
//! Every other target, glibc included, builds nothing here.

fn main() {
    println!("cargo::rerun-if-changed=src/musl_mem.c");
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if env == "musl" && arch == "x86_64" {
        cc::Build::new()
            .file("src/musl_mem.c")
            .opt_level(2)
            .flag("-ffreestanding")
            .flag("-fno-builtin")
            // Keeps GCC from turning a copy loop into a call to memcpy.
            .flag_if_supported("-fno-tree-loop-distribute-patterns")
            .compile("promdrop_musl_mem");
    }
}
