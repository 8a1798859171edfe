//! Child processes under a time limit: every wait here has an end, and a
//! child that overstays is killed, so one stuck row cannot hang the bench.

use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How a child ended and what it cost.
#[derive(Clone, Copy, Debug)]
pub struct Exit {
    /// Exit code; None when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// utime + stime of the child (and any children it waited for).
    pub cpu: Duration,
    /// ru_maxrss, KiB.
    pub max_rss_kib: u64,
    /// True when we had to SIGKILL it.
    pub killed: bool,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            _ if self.killed => "killed after its time limit".to_string(),
            (Some(c), _) => format!("exit status {c}"),
            (_, Some(s)) => format!("killed by signal {s}"),
            _ => "ended".to_string(),
        }
    }
}

/// Starts `cmd`, naming it in the error.
pub fn spawn(cmd: &mut Command) -> Result<Child> {
    cmd.spawn().with_context(|| format!("starting {:?}", cmd.get_program()))
}

/// Sends SIGINT: tracers then detach, drain and print their summary.
pub fn interrupt(child: &Child) -> Result<()> {
    let pid = pid(child)?;
    // SAFETY: kill(2) on our own, not yet reaped, child.
    if unsafe { libc::kill(pid, libc::SIGINT) } != 0 {
        return Err(std::io::Error::last_os_error()).context("sending SIGINT");
    }
    Ok(())
}

/// Whether the child has already ended (without reaping it).
pub fn has_exited(child: &Child) -> bool {
    let Ok(pid) = pid(child) else { return true };
    // SAFETY: waitid with WNOWAIT only peeks; info is a zeroed local.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let ret =
            libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT);
        ret != 0 || info.si_pid() != 0
    }
}

/// Reaps the child within `limit`, else SIGKILLs and reaps it. Uses wait4
/// for the child's own rusage. The `Child` must not be waited on again.
pub fn wait(child: &Child, limit: Duration) -> Result<Exit> {
    let pid = pid(child)?;
    let end = Instant::now() + limit;
    let mut killed = false;
    loop {
        let mut status = 0;
        // SAFETY: rusage is a zeroed local; pid is our unreaped child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let flags = if killed { 0 } else { libc::WNOHANG };
        let ret = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        if ret < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err).context("waiting for a child");
        }
        if ret == pid {
            return Ok(Exit {
                code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
                signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
                cpu: timeval(usage.ru_utime) + timeval(usage.ru_stime),
                max_rss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
                killed,
            });
        }
        if Instant::now() >= end && !killed {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            killed = true;
            continue;
        }
        thread::sleep(Duration::from_millis(2));
    }
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

fn pid(child: &Child) -> Result<i32> {
    match i32::try_from(child.id()) {
        Ok(p) if p > 0 => Ok(p),
        _ => bail!("child has no usable pid ({})", child.id()),
    }
}

/// A child that is SIGKILLed and reaped when dropped unless it was waited
/// for: a failed row never leaves a tracer attached behind it.
pub struct Guard {
    pub child: Child,
    reaped: bool,
}

impl Guard {
    pub fn new(child: Child) -> Self {
        Guard { child, reaped: false }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn wait(&mut self, limit: Duration) -> Result<Exit> {
        let exit = wait(&self.child, limit)?;
        self.reaped = true;
        Ok(exit)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_that_overstays_is_killed() {
        let mut g = Guard::new(spawn(Command::new("sleep").arg("30")).unwrap());
        let t = Instant::now();
        let exit = g.wait(Duration::from_millis(50)).unwrap();
        assert!(exit.killed && !exit.success());
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn exit_codes_and_exited_state_are_seen() {
        let mut g = Guard::new(spawn(Command::new("sh").args(["-c", "exit 3"])).unwrap());
        let end = Instant::now() + Duration::from_secs(5);
        while !has_exited(&g.child) && Instant::now() < end {
            thread::sleep(Duration::from_millis(1));
        }
        assert!(has_exited(&g.child));
        let exit = g.wait(Duration::from_secs(5)).unwrap();
        assert_eq!(exit.code, Some(3));
        assert_eq!(exit.describe(), "exit status 3");
    }
}
