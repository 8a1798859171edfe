//! Compiles the floor row's BPF program (floor.bpf.c) against the main
//! crate's vmlinux.h and generates its Rust skeleton.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "floor.bpf.c";
/// Shared with the main crate so both programs see the same kernel types.
const VMLINUX_DIR: &str = "../src/bpf";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    SkeletonBuilder::new()
        .source(SRC)
        .clang_args(["-Wall", "-Werror", "-I", VMLINUX_DIR])
        .build_and_generate(out.join("floor.skel.rs"))
        .expect("compiling bench/floor.bpf.c (needs clang: run `make deps`)");
    println!("cargo:rerun-if-changed={SRC}");
    println!("cargo:rerun-if-changed={VMLINUX_DIR}/vmlinux.h");
}
