//! Compiles the BPF programs and generates their Rust skeletons.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

/// The tracer, and the small program that asks the kernel for the
/// function addresses and BTF ids the tracer's set-up needs.
const PROGRAMS: [&str; 2] = ["tcpstate", "kernel_facts"];

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    for name in PROGRAMS {
        let src = format!("src/bpf/{name}.bpf.c");
        SkeletonBuilder::new()
            .source(&src)
            .clang_args(["-Wall", "-Werror"])
            .build_and_generate(out.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|e| panic!("compiling {src} (needs clang: run `make deps`): {e}"));
        println!("cargo:rerun-if-changed={src}");
    }
    // The headers tcpstate.bpf.c includes: one object, one skeleton.
    for file in [
        "src/bpf/tcpstate.h",
        "src/bpf/tcpstate.bpf.h",
        "src/bpf/cgroup.bpf.h",
        "src/bpf/timewait.bpf.h",
        "src/bpf/nested.bpf.h",
        "src/bpf/vmlinux.h",
    ] {
        println!("cargo:rerun-if-changed={file}");
    }
}
