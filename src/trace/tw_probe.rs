//! Which TIME_WAIT probes this kernel can run, and how each kind is set up:
//! the kernel has no state tracepoint for timewait sockets, so tcpstate picks
//! fentry, kprobe or timer tracepoints at run time.

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::Link;

use super::kernel::Kernel;
use super::{rodata, Links};
use crate::skel::{OpenTcpstateSkel, TcpstateSkel};

/// How TIME_WAIT sockets are followed (the kernel has no state tracepoint
/// for them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TwProbe {
    /// fentry, else kprobe, else timer, else off
    #[default]
    Auto,
    /// fexit/inet_twsk_alloc and fentry on the function that frees timewait sockets
    Fentry,
    /// kretprobe/inet_twsk_alloc and a kprobe on the freeing function
    Kprobe,
    /// tp_btf timer_start/timer_cancel/timer_expire_entry on the timewait timer
    Timer,
    /// No TIME_WAIT probes: the client's last transition is FIN_WAIT2:CLOSE
    Off,
}

impl TwProbe {
    pub fn name(self) -> &'static str {
        match self {
            TwProbe::Auto => "auto",
            TwProbe::Fentry => "fentry",
            TwProbe::Kprobe => "kprobe",
            TwProbe::Timer => "timer",
            TwProbe::Off => "off",
        }
    }
}

/// How one TIME_WAIT probe kind will be set up on this kernel.
pub(super) struct TwPlan {
    kind: TwProbe,
    /// The function whose entry means "timewait socket freed".
    free_fn: String,
    /// Address of tw_timer_handler, for the timer kind.
    timer_fn: u64,
}

/// Preferred first: the function that frees a timewait socket whatever
/// ended it; inet_twsk_put (every reference drop) when that is not a symbol.
pub(super) const FREE_FNS: [&str; 2] = ["inet_twsk_free", "inet_twsk_put"];
pub(super) const ALLOC_FN: &str = "inet_twsk_alloc";
/// Every timewait socket's timer callback.
pub(super) const TIMER_FN: &str = "tw_timer_handler";

impl TwPlan {
    /// Checks the kernel has what `kind` needs, before any load is tried.
    pub(super) fn new(kind: TwProbe, kernel: &Kernel, free_fn: Option<&str>) -> Result<TwPlan> {
        let candidates: Vec<&str> = free_fn.map_or(FREE_FNS.to_vec(), |f| vec![f]);
        let mut plan = TwPlan { kind, free_fn: String::new(), timer_fn: 0 };
        match kind {
            TwProbe::Fentry | TwProbe::Kprobe => {
                if kind == TwProbe::Kprobe && !kernel.has_kprobes() {
                    bail!("this kernel has no kprobes (CONFIG_KPROBES is off)");
                }
                // A function must exist (and not be inlined away) to be
                // probed; fentry also needs it in BTF.
                if kernel.symbol(ALLOC_FN).is_none() {
                    bail!("{ALLOC_FN} is not a kernel symbol");
                }
                if kind == TwProbe::Fentry {
                    kernel.fentry_loads(ALLOC_FN)?;
                }
                plan.free_fn = candidates
                    .iter()
                    .find(|f| kernel.symbol(f).is_some())
                    .ok_or_else(|| anyhow!("no kernel symbol named {}", candidates.join(" or ")))?
                    .to_string();
            }
            TwProbe::Timer => {
                plan.timer_fn = kernel.symbol(TIMER_FN).ok_or_else(|| anyhow!("{TIMER_FN} is not a kernel symbol"))?;
            }
            TwProbe::Off | TwProbe::Auto => {}
        }
        Ok(plan)
    }

    /// Loads only this kind's programs and points them at their targets.
    pub(super) fn apply(&self, open: &mut OpenTcpstateSkel<'_>) -> Result<()> {
        let ro = rodata(open)?;
        ro.tw_timer_fn = self.timer_fn;
        ro.tw_free_checks_ref = self.free_fn == "inet_twsk_put";
        let p = &mut open.progs;
        let fentry = self.kind == TwProbe::Fentry;
        let kprobe = self.kind == TwProbe::Kprobe;
        let timer = self.kind == TwProbe::Timer;
        p.tw_alloc_fexit.set_autoload(fentry);
        p.tw_free_fentry.set_autoload(fentry);
        p.tw_alloc_kprobe.set_autoload(kprobe);
        p.tw_alloc_kretprobe.set_autoload(kprobe);
        p.tw_free_kprobe.set_autoload(kprobe);
        p.tw_timer_start.set_autoload(timer);
        p.tw_timer_cancel.set_autoload(timer);
        p.tw_timer_expire.set_autoload(timer);
        if fentry {
            p.tw_free_fentry
                .set_attach_target(0, Some(self.free_fn.clone()))
                .context("pointing the fentry probe at its function")?;
        }
        Ok(())
    }

    /// Attaches the state tracepoint, its backup and this kind's programs.
    pub(super) fn attach(&self, skel: &TcpstateSkel<'_>) -> Result<Links> {
        let p = &skel.progs;
        let named = |what: &str, r: libbpf_rs::Result<Link>| r.with_context(|| format!("attaching {what}"));
        let mut links = vec![
            named("tp_btf/inet_sock_set_state", p.inet_sock_set_state.attach())?,
            named("tp_btf/inet_sock_set_state (backup)", p.inet_sock_set_state_nested.attach())?,
        ];
        match self.kind {
            TwProbe::Fentry => {
                links.push(named("fexit/inet_twsk_alloc", p.tw_alloc_fexit.attach())?);
                links.push(named(&format!("fentry/{}", self.free_fn), p.tw_free_fentry.attach())?);
            }
            TwProbe::Kprobe => {
                links.push(named("kprobe/inet_twsk_alloc", p.tw_alloc_kprobe.attach_kprobe(false, ALLOC_FN))?);
                links.push(named("kretprobe/inet_twsk_alloc", p.tw_alloc_kretprobe.attach_kprobe(true, ALLOC_FN))?);
                links.push(named(
                    &format!("kprobe/{}", self.free_fn),
                    p.tw_free_kprobe.attach_kprobe(false, &self.free_fn),
                )?);
            }
            TwProbe::Timer => {
                links.push(named("tp_btf/timer_start", p.tw_timer_start.attach())?);
                links.push(named("tp_btf/timer_cancel", p.tw_timer_cancel.attach())?);
                links.push(named("tp_btf/timer_expire_entry", p.tw_timer_expire.attach())?);
            }
            TwProbe::Off | TwProbe::Auto => {}
        }
        Ok(Links(links))
    }

    /// What -v says about the choice.
    pub(super) fn describe(&self) -> String {
        match self.kind {
            TwProbe::Fentry => format!("fentry (fexit/{ALLOC_FN}, fentry/{})", self.free_fn),
            TwProbe::Kprobe => format!("kprobe (kretprobe/{ALLOC_FN}, kprobe/{})", self.free_fn),
            TwProbe::Timer => "timer (tp_btf/timer_start, timer_cancel, timer_expire_entry)".into(),
            TwProbe::Off | TwProbe::Auto => "off".into(),
        }
    }
}
