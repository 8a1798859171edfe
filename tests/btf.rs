//! The object loads on kernels built without IPv6 or without network
//! namespaces, whose BTF lacks sock_common's skc_v6_* or possible_net_t's
//! net: such a kernel is imitated by a copy of this kernel's BTF with those
//! members renamed, handed to tcpstate with --btf (libbpf uses it for CO-RE
//! relocations only; attaching still uses the running kernel's).

mod common;

use std::time::Duration;

use common::*;

const BTF_MAGIC: u16 = 0xeb9f;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn name_at(b: &[u8], strings: usize, off: u32) -> &str {
    let s = &b[strings + off as usize..];
    std::str::from_utf8(&s[..s.iter().position(|&c| c == 0).unwrap()]).unwrap()
}

/// A copy of `btf` in which each `(type, member)` has lost that member's
/// name, as if the kernel were built without it. `type` names a struct or
/// a typedef of one. The member's name offset moves one byte into its own
/// string ("net" becomes "et"), so that the other users of a shared string
/// (`struct net`, every other member called "net") keep theirs.
fn without_members(btf: &[u8], members: &[(&str, &str)]) -> Vec<u8> {
    assert_eq!(u16::from_le_bytes([btf[0], btf[1]]), BTF_MAGIC, "little-endian BTF");
    let hdr_len = u32_at(btf, 4) as usize;
    let (type_off, type_len) = (u32_at(btf, 8) as usize, u32_at(btf, 12) as usize);
    let strings = hdr_len + u32_at(btf, 16) as usize;
    // Each type: (name_off, kind, vlen, size or type, offset of its members).
    let mut types = vec![(0u32, 0u32, 0usize, 0u32, 0usize)];
    let (mut at, end) = (hdr_len + type_off, hdr_len + type_off + type_len);
    while at < end {
        let (name, info, size_or_type) = (u32_at(btf, at), u32_at(btf, at + 4), u32_at(btf, at + 8));
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        let extra = match kind {
            1 | 14 | 17 => 4,          // INT, VAR, DECL_TAG
            3 => 12,                   // ARRAY
            4 | 5 => 12 * vlen,        // STRUCT, UNION: members
            6 | 13 => 8 * vlen,        // ENUM, FUNC_PROTO
            15 | 19 => 12 * vlen,      // DATASEC, ENUM64
            2 | 7..=12 | 16 | 18 => 0, // PTR, FWD, TYPEDEF, modifiers, FUNC, FLOAT, TYPE_TAG
            _ => panic!("BTF kind {kind} unknown to this test"),
        };
        types.push((name, kind, vlen, size_or_type, at + 12));
        at += 12 + extra;
    }
    let mut out = btf.to_vec();
    for (type_name, member) in members {
        let mut id = types
            .iter()
            .position(|t| matches!(t.1, 4 | 8) && name_at(btf, strings, t.0) == *type_name)
            .unwrap_or_else(|| panic!("no type {type_name}"));
        if types[id].1 == 8 {
            id = types[id].3 as usize;
        }
        let (_, kind, vlen, _, members_at) = types[id];
        assert_eq!(kind, 4, "{type_name} is a struct");
        let slot = (0..vlen)
            .map(|i| members_at + 12 * i)
            .find(|&m| name_at(btf, strings, u32_at(btf, m)) == *member)
            .unwrap_or_else(|| panic!("{type_name} has no member {member}"));
        out[slot..slot + 4].copy_from_slice(&(u32_at(btf, slot) + 1).to_le_bytes());
    }
    out
}

/// A file removed when dropped, a failed test's too.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Traces one curl -> nginx request with the BTF of a kernel that lacks
/// `members`; returns the JSON events.
fn trace_with_btf_without(tag: &str, members: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let btf = std::fs::read("/sys/kernel/btf/vmlinux").unwrap();
    let path = TempFile(std::env::temp_dir().join(format!("tcpstate-btf-{tag}-{}", std::process::id())));
    std::fs::write(&path.0, without_members(&btf, members)).unwrap();
    let port = free_port();
    let tracer =
        Tracer::start(&["--btf", path.0.to_str().unwrap(), "127.0.0.1", &port.to_string(), "-o", "json", "--skaddr"]);
    let nginx = Nginx::start_on(&format!("127.0.0.1:{port}"));
    assert_eq!(curl(&nginx.url()), 0);
    wait_for(Duration::from_secs(5), "the connection to close", || !has_connection(port));
    let out = tracer.stop();
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stderr.contains("lost 0:"), "{}", out.stderr);
    let events = json_events(&out.stdout);
    assert_eq!(events.len(), 11, "listener and both sides: {}{}", out.stdout, out.stderr);
    let clients = client_connections(&out.stdout);
    assert_eq!(clients.len(), 1);
    assert_eq!(transitions(&clients[0]), CLIENT_SEQ, "TIME_WAIT entered, through the timewait readers");
    assert!(events.iter().all(|e| e["family"] == 4 && e["daddr"] != ""), "{}", out.stdout);
    assert!(clients[0].iter().all(|e| e["daddr"] == "127.0.0.1" && e["dport"] == port), "{}", out.stdout);
    events
}

#[test]
fn loads_and_traces_ipv4_without_ipv6_in_the_kernel() {
    if !require_root() {
        return;
    }
    let events =
        trace_with_btf_without("noipv6", &[("sock_common", "skc_v6_daddr"), ("sock_common", "skc_v6_rcv_saddr")]);
    assert!(events.iter().all(|e| e["netns"].as_u64().unwrap() != 0));
}

#[test]
fn loads_and_reports_netns_0_without_network_namespaces() {
    if !require_root() {
        return;
    }
    let events = trace_with_btf_without("nonetns", &[("possible_net_t", "net")]);
    assert!(events.iter().all(|e| e["netns"] == 0), "{events:?}");
}

#[test]
fn the_renamed_btf_only_loses_those_members() {
    if !require_root() {
        return;
    }
    let btf = std::fs::read("/sys/kernel/btf/vmlinux").unwrap();
    let patched = without_members(&btf, &[("possible_net_t", "net")]);
    assert_eq!(patched.len(), btf.len());
    let changed: Vec<usize> = (0..btf.len()).filter(|&i| btf[i] != patched[i]).collect();
    assert!(!changed.is_empty() && changed.len() <= 4 && changed[changed.len() - 1] - changed[0] < 4, "{changed:?}");
}
