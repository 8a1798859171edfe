//! Stock kernels booted in QEMU (tests/kernels/run.sh), and the sections a
//! guest payload prints between `@@BEGIN <name>@@` and `@@END <name>@@`.

use std::path::Path;
use std::process::Command;

/// One section of a guest's console.
pub struct Section {
    pub name: String,
    body: String,
}

impl Section {
    /// The section's lines that start with `prefix`, without it.
    pub fn lines(&self, prefix: &str) -> String {
        self.body.lines().filter_map(|l| l.strip_prefix(prefix)).map(|l| format!("{l}\n")).collect()
    }

    /// Its JSON lines (tcpstate's output).
    pub fn json(&self) -> String {
        self.body.lines().filter(|l| l.starts_with('{')).map(|l| format!("{l}\n")).collect()
    }
}

/// Boots kernel `version` with `payload` (a script in tests/kernels) and
/// `args` for run.sh (files to put in the guest), with `env` set; returns the
/// console's sections. The guest failing is the test failing.
pub fn boot(version: &str, payload: &str, args: &[String], env: &[(&str, String)]) -> Vec<Section> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kernels");
    let out = Command::new(here.join("run.sh"))
        .arg(version)
        .arg(here.join(payload))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("running tests/kernels/run.sh");
    let console = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "guest {version} failed ({}):\n{console}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    sections(&console)
}

/// The `@@BEGIN <name>@@ … @@END <name>@@` sections of a console, in order.
pub fn sections(console: &str) -> Vec<Section> {
    let mut sections = Vec::new();
    let mut rest = console;
    while let Some(start) = rest.find("@@BEGIN ") {
        let after = &rest[start + 8..];
        let name = &after[..after.find("@@").expect("section name")];
        let end = after.find(&format!("@@END {name}@@")).expect("section end");
        sections.push(Section { name: name.to_string(), body: after[name.len() + 2..end].to_string() });
        rest = &after[end..];
    }
    sections
}
