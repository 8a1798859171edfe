//! Ctrl-C (SIGINT) and SIGTERM end the bench between two runs rather than
//! in the middle of one, so that what it made (its cgroups, its scratch
//! directory) is removed by their guards on the way out. A second signal
//! ends it at once, as if nothing were caught.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// From now on SIGINT and SIGTERM only set a flag, once each (SA_RESETHAND:
/// the next one has the default effect). Children get the default back at
/// exec, so a tracer still stops on the SIGINT the bench sends it, and on a
/// terminal's Ctrl-C, which reaches the whole process group.
pub fn catch() -> Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only stores to an
        // atomic (async-signal-safe); sigemptyset gets a valid pointer.
        let ret = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESETHAND | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if ret != 0 {
            bail!("installing a handler for signal {signal}: {}", std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// An error once SIGINT or SIGTERM has come.
pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        bail!("interrupted: stopped between two runs, no results written");
    }
    Ok(())
}
