//! Shell completions and the man page, generated from the same clap
//! definitions as --help so that they cannot drift from the real options.

use std::io::{self, Write};

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::Cli;

pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "tcpstate", &mut out);
    io::stdout().write_all(&out).context("writing the completion script")
}

pub fn man_page() -> Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out).context("rendering the man page")?;
    io::stdout().write_all(&out).context("writing the man page")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_documents_the_options() {
        let mut out = Vec::new();
        clap_mangen::Man::new(Cli::command()).render(&mut out).unwrap();
        let man = String::from_utf8(out).unwrap();
        assert!(man.starts_with(".ie \\n(.g .ds Aq"), "roff");
        for needle in ["tcpstate", "\\-\\-tw\\-probe", "\\-\\-lport", "SERVER_IP"] {
            assert!(man.contains(needle), "{needle} missing");
        }
    }

    #[test]
    fn completions_know_the_flags() {
        let mut out = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut Cli::command(), "tcpstate", &mut out);
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("--tw-probe") && script.contains("--output"));
        assert_eq!(script.contains("plot"), cfg!(feature = "plot"), "the plot subcommand is there with its feature");
    }
}
