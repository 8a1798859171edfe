//! Compiles the CO-RE BPF program and generates its Rust skeleton.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

const SRC: &str = "src/bpf/tcpstate.bpf.c";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    SkeletonBuilder::new()
        .source(SRC)
        .clang_args(["-Wall", "-Werror"])
        .build_and_generate(out.join("tcpstate.skel.rs"))
        .expect("compiling src/bpf/tcpstate.bpf.c (needs clang: run `make deps`)");
    for file in [SRC, "src/bpf/tcpstate.h", "src/bpf/vmlinux.h"] {
        println!("cargo:rerun-if-changed={file}");
    }
}
