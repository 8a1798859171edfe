//! Which TIME_WAIT probes this kernel can run, and how each kind is set up:
//! the kernel has no state tracepoint for timewait sockets, so tcpstate picks
//! fentry, kprobe or timer tracepoints at run time.

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::Link;

use super::kernel::Kernel;
use super::rodata;
use crate::skel::{OpenTcpstateSkel, TcpstateSkel};

/// How TIME_WAIT sockets are followed (the kernel has no state tracepoint
/// for them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TwProbe {
    /// fentry, else kprobe, else timer, else off
    #[default]
    Auto,
    /// fentry on the hashdance (birth), __inet_twsk_schedule (re-arm) and the freeing function
    Fentry,
    /// kprobes on the same three functions
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
    /// Where tcp_time_wait() hands the connection to the timewait socket.
    birth_fn: &'static str,
    /// The function whose entry means "timewait socket freed".
    free_fn: String,
    /// Address of tw_timer_handler, for the timer kind.
    timer_fn: u64,
}

/// The function that has both the full and the timewait socket, as this
/// kernel names it (6.10 renamed it when it took over arming the timer).
pub(super) const BIRTH_FNS: [&str; 2] = ["inet_twsk_hashdance_schedule", "inet_twsk_hashdance"];
/// Arms or re-arms a timewait socket's timer; re-arms are reported.
pub(super) const REARM_FN: &str = "__inet_twsk_schedule";
/// Preferred first: the function that frees a timewait socket whatever
/// ended it; inet_twsk_put (every reference drop) when that is not a symbol.
pub(super) const FREE_FNS: [&str; 2] = ["inet_twsk_free", "inet_twsk_put"];
/// Every timewait socket's timer callback.
pub(super) const TIMER_FN: &str = "tw_timer_handler";

impl TwPlan {
    /// Checks the kernel has what `kind` needs, before any load is tried.
    pub(super) fn new(kind: TwProbe, kernel: &Kernel, free_fn: Option<&str>) -> Result<TwPlan> {
        let candidates: Vec<&str> = free_fn.map_or(FREE_FNS.to_vec(), |f| vec![f]);
        let mut plan = TwPlan { kind, birth_fn: BIRTH_FNS[0], free_fn: String::new(), timer_fn: 0 };
        match kind {
            TwProbe::Fentry | TwProbe::Kprobe => {
                if kind == TwProbe::Kprobe && !kernel.has_kprobes() {
                    bail!("this kernel has no kprobes (CONFIG_KPROBES is off)");
                }
                // A function must exist (and not be inlined away) to be
                // probed; fentry also needs it in BTF.
                plan.birth_fn = BIRTH_FNS
                    .into_iter()
                    .find(|f| kernel.symbol(f).is_some())
                    .ok_or_else(|| anyhow!("no kernel symbol named {}", BIRTH_FNS.join(" or ")))?;
                if kernel.symbol(REARM_FN).is_none() {
                    bail!("{REARM_FN} is not a kernel symbol");
                }
                if kind == TwProbe::Fentry {
                    kernel.fentry_loads(plan.birth_fn)?;
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
        ro.tw_free_on_put = self.free_fn == "inet_twsk_put";
        let p = &mut open.progs;
        let fentry = self.kind == TwProbe::Fentry;
        let kprobe = self.kind == TwProbe::Kprobe;
        let timer = self.kind == TwProbe::Timer;
        for prog in [&mut p.tw_birth_fentry, &mut p.tw_rearm_fentry, &mut p.tw_free_fentry] {
            prog.set_autoload(fentry);
        }
        for prog in [&mut p.tw_birth_kprobe, &mut p.tw_rearm_kprobe, &mut p.tw_free_kprobe] {
            prog.set_autoload(kprobe);
        }
        for prog in [&mut p.tw_timer_start, &mut p.tw_timer_cancel, &mut p.tw_timer_expire] {
            prog.set_autoload(timer);
        }
        if fentry {
            let target = |what| format!("pointing the fentry probe at {what}");
            p.tw_birth_fentry
                .set_attach_target(0, Some(self.birth_fn.into()))
                .with_context(|| target(self.birth_fn))?;
            p.tw_free_fentry.set_attach_target(0, Some(self.free_fn.clone())).with_context(|| target(&self.free_fn))?;
        }
        Ok(())
    }

    /// Attaches this kind's programs.
    pub(super) fn attach(&self, skel: &TcpstateSkel<'_>) -> Result<Vec<Link>> {
        let p = &skel.progs;
        let named = |what: String, r: libbpf_rs::Result<Link>| r.with_context(|| format!("attaching {what}"));
        let links = match self.kind {
            TwProbe::Fentry => vec![
                named(format!("fentry/{}", self.birth_fn), p.tw_birth_fentry.attach())?,
                named(format!("fentry/{REARM_FN}"), p.tw_rearm_fentry.attach())?,
                named(format!("fentry/{}", self.free_fn), p.tw_free_fentry.attach())?,
            ],
            TwProbe::Kprobe => vec![
                named(format!("kprobe/{}", self.birth_fn), p.tw_birth_kprobe.attach_kprobe(false, self.birth_fn))?,
                named(format!("kprobe/{REARM_FN}"), p.tw_rearm_kprobe.attach_kprobe(false, REARM_FN))?,
                named(format!("kprobe/{}", self.free_fn), p.tw_free_kprobe.attach_kprobe(false, &self.free_fn))?,
            ],
            TwProbe::Timer => vec![
                named("tp_btf/timer_start".into(), p.tw_timer_start.attach())?,
                named("tp_btf/timer_cancel".into(), p.tw_timer_cancel.attach())?,
                named("tp_btf/timer_expire_entry".into(), p.tw_timer_expire.attach())?,
            ],
            TwProbe::Off | TwProbe::Auto => Vec::new(),
        };
        Ok(links)
    }

    /// What -v says about the choice: exactly what is attached.
    pub(super) fn describe(&self) -> String {
        let (birth, free) = (self.birth_fn, &self.free_fn);
        match self.kind {
            TwProbe::Fentry | TwProbe::Kprobe => {
                let k = self.kind.name();
                format!("{k} ({k}/{birth}, {k}/{REARM_FN}, {k}/{free})")
            }
            TwProbe::Timer => "timer (tp_btf/timer_start, timer_cancel, timer_expire_entry)".into(),
            TwProbe::Off | TwProbe::Auto => "off".into(),
        }
    }
}
