//! Timeline pictures (being written; placeholder so the crate builds).
#[derive(clap::Args, Debug)]
pub struct PlotArgs {
    pub input: Option<String>,
}
pub fn run(_args: &PlotArgs) -> anyhow::Result<()> {
    anyhow::bail!("plot: not written yet")
}
