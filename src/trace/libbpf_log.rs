//! libbpf's own messages: shown with -v, otherwise kept so that a failed
//! load can name the program and the kernel's reason in one line.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use libbpf_rs::PrintLevel;

static VERBOSE: AtomicBool = AtomicBool::new(false);
static RECENT: Mutex<Vec<String>> = Mutex::new(Vec::new());
const KEEP: usize = 64;

/// Routes libbpf's messages through us. Call before opening any object.
pub fn init(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
    libbpf_rs::set_print(Some((PrintLevel::Debug, on_message)));
}

fn on_message(level: PrintLevel, msg: String) {
    let msg = msg.trim_end().to_string();
    if VERBOSE.load(Ordering::Relaxed) && level != PrintLevel::Debug {
        eprintln!("{msg}");
    }
    if let Ok(mut recent) = RECENT.lock() {
        if recent.len() == KEEP {
            recent.remove(0);
        }
        recent.push(msg);
    }
}

/// The program libbpf last complained about, from lines such as
/// `libbpf: prog 'inet_sock_set_state': failed to load: -1`.
pub fn failed_program() -> Option<String> {
    let recent = RECENT.lock().ok()?;
    recent.iter().rev().find_map(|line| program_in(line))
}

fn program_in(line: &str) -> Option<String> {
    let rest = &line[line.find("prog '")? + 6..];
    Some(rest[..rest.find('\'')?].to_string())
}

/// Forgets what earlier attempts logged (probing tries several loads).
pub fn clear() {
    if let Ok(mut recent) = RECENT.lock() {
        recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_program_name() {
        assert_eq!(program_in("libbpf: prog 'tw_alloc_fexit': failed to load: -1").as_deref(), Some("tw_alloc_fexit"));
        assert_eq!(program_in("libbpf: map 'events': created"), None);
    }
}
