//! Cgroups in user space: which container a cgroup path belongs to, and
//! the id and level of the cgroup `--cgroup PATH` names.

mod container;
mod mount;

pub use container::{container_of, Container, Runtime};
pub use mount::{cgroup2_mount, id_and_level};

/// `text` with every `introducer` followed by `digits` digits in `radix`
/// replaced by the byte they spell: systemd's `\x2d` in unit names,
/// mountinfo's `\040`. Anything else stays as it is.
fn unescape(text: &str, introducer: &str, digits: usize, radix: u32) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some(&first) = rest.first() {
        let spelled = rest
            .strip_prefix(introducer.as_bytes())
            .and_then(|after| after.get(..digits))
            .filter(|code| code.iter().all(|&c| char::from(c).is_digit(radix)))
            .and_then(|code| u8::from_str_radix(std::str::from_utf8(code).ok()?, radix).ok());
        match spelled {
            Some(byte) => {
                out.push(byte);
                rest = &rest[introducer.len() + digits..];
            }
            None => {
                out.push(first);
                rest = &rest[1..];
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
