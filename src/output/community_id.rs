//! Community ID v1 (corelight's community-id-spec): one hash that names a
//! flow the same from either end, so that tcpstate's events join those of
//! network sensors (Zeek, Suricata, Elastic's and OpenTelemetry's
//! `network.community_id`) on a single field.
//!
//! The hashed bytes, all in network byte order: the seed (2), the smaller
//! endpoint's address then the other's (4 or 16 each), the protocol (1), a
//! zero pad byte (1), the smaller endpoint's port then the other's (2
//! each). "Smaller" compares the addresses byte by byte and the ports only
//! on a tie, so both ends of a connection hash the same bytes. The id is
//! "1:" and the SHA-1 of those bytes in padded standard base64.
//!
//! SHA-1 and base64 are written out here rather than taken from a crate:
//! the input is at most 40 bytes of fixed layout (one SHA-1 block), it is
//! computed for every event, so no allocation but the result and no
//! dispatch, and SHA-1 serves as the spec's flow hash, not as security.
//! Both are checked against their standards' vectors below, the whole
//! against the spec's own baseline.

use std::net::IpAddr;

/// IANA protocol number of TCP, the only protocol tcpstate sees.
const TCP: u8 = 6;

/// The Community ID v1 of a TCP flow, e.g. `1:LQU9qZlK+B5F3KDmev6m5PMibrg=`:
/// the same whichever end is `saddr`. `seed` is the spec's (0 unless the
/// sites that compare ids agreed on another).
pub fn community_id(saddr: IpAddr, sport: u16, daddr: IpAddr, dport: u16, seed: u16) -> String {
    let mut id = String::with_capacity(30);
    id.push_str("1:");
    base64(&digest(saddr, sport, daddr, dport, seed), &mut id);
    id
}

/// The SHA-1 of the flow tuple as the spec lays it out.
fn digest(saddr: IpAddr, sport: u16, daddr: IpAddr, dport: u16, seed: u16) -> [u8; 20] {
    let (a, b) = (Addr::of(saddr, daddr), Addr::of(daddr, saddr));
    let ((a, ap), (b, bp)) =
        if (a.bytes(), sport) <= (b.bytes(), dport) { ((a, sport), (b, dport)) } else { ((b, dport), (a, sport)) };
    let mut input = [0u8; 40];
    let mut len = 0;
    for part in [&seed.to_be_bytes()[..], a.bytes(), b.bytes(), &[TCP, 0], &ap.to_be_bytes(), &bp.to_be_bytes()] {
        input[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    sha1(&input[..len])
}

/// An address as the packets carry it.
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Addr {
    /// `addr`, given that its peer is `peer`. An IPv4-mapped IPv6 address
    /// is IPv4 on the wire, which is what a sensor hashes (tcpstate already
    /// prints such sockets' addresses as IPv4). The spec hashes two
    /// addresses of one family; should the two differ, both are taken as
    /// IPv6 so that either end still hashes the same bytes.
    fn of(addr: IpAddr, peer: IpAddr) -> Addr {
        match (addr.to_canonical(), peer.to_canonical()) {
            (IpAddr::V4(a), IpAddr::V4(_)) => Addr::V4(a.octets()),
            (IpAddr::V4(a), IpAddr::V6(_)) => Addr::V6(a.to_ipv6_mapped().octets()),
            (IpAddr::V6(a), _) => Addr::V6(a.octets()),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Addr::V4(b) => b,
            Addr::V6(b) => b,
        }
    }
}

/// SHA-1 (FIPS 180-4) of `data`.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0];
    let whole = data.len() / 64 * 64;
    for block in data[..whole].chunks_exact(64) {
        compress(&mut h, block);
    }
    // The rest, a 1 bit, zeros, and the length in bits: one block, or two
    // when the length no longer fits after the rest.
    let rest = &data[whole..];
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let end = if rest.len() < 56 { 64 } else { 128 };
    tail[end - 8..end].copy_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for block in tail[..end].chunks_exact(64) {
        compress(&mut h, block);
    }
    let mut out = [0u8; 20];
    for (bytes, word) in out.chunks_exact_mut(4).zip(h) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// One 64-byte block into the state.
fn compress(h: &mut [u32; 5], block: &[u8]) {
    let mut w = [0u32; 80];
    for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    for t in 16..80 {
        w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
    }
    let [mut a, mut b, mut c, mut d, mut e] = *h;
    for (t, word) in w.into_iter().enumerate() {
        let (f, k) = match t / 20 {
            0 => ((b & c) | (!b & d), 0x5A82_7999),
            1 => (b ^ c ^ d, 0x6ED9_EBA1),
            2 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
            _ => (b ^ c ^ d, 0xCA62_C1D6),
        };
        let temp = a.rotate_left(5).wrapping_add(f).wrapping_add(e).wrapping_add(k).wrapping_add(word);
        (e, d, c, b, a) = (d, c, b.rotate_left(30), a, temp);
    }
    for (state, v) in h.iter_mut().zip([a, b, c, d, e]) {
        *state = state.wrapping_add(v);
    }
}

/// Standard base64 (RFC 4648 section 4), padded, appended to `out`.
fn base64(bytes: &[u8], out: &mut String) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            // A chunk of k bytes gives k + 1 characters, then padding.
            let c = if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] } else { b'=' };
            out.push(char::from(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    fn id(saddr: &str, sport: u16, daddr: &str, dport: u16, seed: u16) -> String {
        community_id(saddr.parse().unwrap(), sport, daddr.parse().unwrap(), dport, seed)
    }

    /// corelight/community-id-spec baseline/baseline_deflt.json (seed 0)
    /// and baseline_seed1.json (seed 1): the TCP flows, each from both ends.
    #[test]
    fn the_spec_baseline_tcp_flows() {
        let flows = [
            (
                "128.232.110.120",
                34855,
                "66.35.250.204",
                80,
                "1:LQU9qZlK+B5F3KDmev6m5PMibrg=",
                "1:3V71V58M3Ksw/yuFALMcW0LAHvc=",
            ),
            (
                "2001:470:e5bf:dead:4957:2174:e82c:4887",
                63943,
                "2607:f8b0:400c:c03::1a",
                25,
                "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=",
                "1:eJYTW6AOzFLlSUoESovMjnu7rMw=",
            ),
        ];
        for (a, ap, b, bp, seed0, seed1) in flows {
            for ((s, sp, d, dp), seed, want) in [
                ((a, ap, b, bp), 0, seed0),
                ((b, bp, a, ap), 0, seed0),
                ((a, ap, b, bp), 1, seed1),
                ((b, bp, a, ap), 1, seed1),
            ] {
                assert_eq!(id(s, sp, d, dp, seed), want, "{s}:{sp} -> {d}:{dp}, seed {seed}");
            }
        }
    }

    /// corelight/pycommunityid tests/communityid_test.py: the digest before
    /// base64 (its use_base64=False id), and the flow of its issue #3.
    #[test]
    fn pycommunityid_vectors() {
        let (a, b) = ("128.232.110.120".parse().unwrap(), "66.35.250.204".parse().unwrap());
        assert_eq!(hex(&digest(a, 34855, b, 80, 0)), "2d053da9994af81e45dca0e67afea6e4f3226eb8");
        assert_eq!(id("10.0.0.1", 10, "10.0.0.2", 11569, 0), "1:SXBGMX1lBOwhhoDrZynfROxnhnM=");
        assert_eq!(id("10.0.0.2", 11569, "10.0.0.1", 10, 0), "1:SXBGMX1lBOwhhoDrZynfROxnhnM=");
        assert_eq!(id("10.0.0.1", 10, "10.0.0.2", 11569, 1), "1:HmBRGR+fUyXF4t8WEtal7Y0gEAo=");
    }

    /// A socket on an IPv4-mapped address sends IPv4 packets: its id is
    /// the one a sensor computes from them.
    #[test]
    fn ipv4_mapped_addresses_hash_as_ipv4() {
        let want = "1:LQU9qZlK+B5F3KDmev6m5PMibrg=";
        assert_eq!(id("::ffff:128.232.110.120", 34855, "::ffff:66.35.250.204", 80, 0), want);
        assert_eq!(id("::ffff:128.232.110.120", 34855, "66.35.250.204", 80, 0), want);
    }

    /// FIPS 180-4's examples (one block, two blocks, a million bytes) and
    /// the lengths where the padding changes shape (from Python's hashlib).
    #[test]
    fn sha1_vectors() {
        let cases: [(&[u8], &str); 3] = [
            (b"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            (b"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"),
        ];
        for (data, want) in cases {
            assert_eq!(hex(&sha1(data)), want, "{:?}", String::from_utf8_lossy(data));
        }
        for (len, want) in [
            (55, "c1c8bbdc22796e28c0e15163d20899b65621d65a"),
            (63, "03f09f5b158a7a8cdad920bddc29b81c18a551f5"),
            (64, "0098ba824b5c16427bd7a1122a5a442a25ec644d"),
        ] {
            assert_eq!(hex(&sha1(&vec![b'a'; len])), want, "{len} bytes of 'a'");
        }
        assert_eq!(hex(&sha1(&vec![b'a'; 1_000_000])), "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    }

    /// RFC 4648 section 10.
    #[test]
    fn base64_vectors() {
        for (data, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = String::new();
            base64(data.as_bytes(), &mut out);
            assert_eq!(out, want, "{data:?}");
        }
    }

    fn any_addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![any::<[u8; 4]>().prop_map(IpAddr::from), any::<[u8; 16]>().prop_map(IpAddr::from)]
    }

    proptest! {
        /// Either end of a flow gets the same id: the ordering rule, ports
        /// breaking ties between equal addresses included.
        #[test]
        fn both_ends_get_the_same_id(a in any_addr(), b in any_addr(), ap: u16, bp: u16, seed: u16, same_addr: bool) {
            let b = if same_addr { a } else { b };
            let forward = community_id(a, ap, b, bp, seed);
            prop_assert_eq!(forward.len(), 30);
            prop_assert!(forward.starts_with("1:") && forward.ends_with('='));
            prop_assert_eq!(&forward, &community_id(b, bp, a, ap, seed));
        }
    }
}
