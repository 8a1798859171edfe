//! The kernel side's ABI, as the generated skeleton carries it from
//! src/bpf/tcpstate.h: the ring record and the constants both sides share.
//! Nothing here is copied by hand, so a change to the header changes user
//! space with it, or fails the build.

use crate::skel::types;

/// One ring buffer record (`struct event`).
pub type RawEvent = types::event;

// SAFETY: `event` is a plain C struct of integers and byte arrays; every bit
// pattern is a valid value.
unsafe impl plain::Plain for RawEvent {}

/// The counters a CLOSE record carries with --connections (`struct tcp_counters`).
pub type RawCounters = types::tcp_counters;

// SAFETY: as for `event`.
unsafe impl plain::Plain for RawCounters {}

/// Ports per -L/-D filter (the kernel side's fixed array).
pub const MAX_PORTS: usize = types::abi_limits::MAX_PORTS.0 as usize;

pub const AF_INET: u16 = types::address_family::AF_INET.0 as u16;
pub const AF_INET6: u16 = types::address_family::AF_INET6.0 as u16;

pub const SIDE_SERVER: u8 = types::side::SIDE_SERVER.0 as u8;
pub const SIDE_CLIENT: u8 = types::side::SIDE_CLIENT.0 as u8;

pub const SRC_SET_STATE: u8 = types::source::SRC_SET_STATE.0 as u8;
pub const SRC_TW_ALLOC: u8 = types::source::SRC_TW_ALLOC.0 as u8;
pub const SRC_TW_ARM: u8 = types::source::SRC_TW_ARM.0 as u8;
pub const SRC_TW_CANCEL: u8 = types::source::SRC_TW_CANCEL.0 as u8;
pub const SRC_TW_EXPIRE: u8 = types::source::SRC_TW_EXPIRE.0 as u8;
pub const SRC_TW_FREE: u8 = types::source::SRC_TW_FREE.0 as u8;
pub const SRC_RESET_SENT: u8 = types::source::SRC_RESET_SENT.0 as u8;
pub const SRC_RESET_RECEIVED: u8 = types::source::SRC_RESET_RECEIVED.0 as u8;

pub const EV_COUNTERS: u8 = types::event_flags::EV_COUNTERS.0 as u8;
pub const EV_NETNS_DYING: u8 = types::event_flags::EV_NETNS_DYING.0 as u8;

pub const RESET_APP_ABORT: u32 = types::reset_cause::RESET_APP_ABORT.0;
pub const RESET_KERNEL: u32 = types::reset_cause::RESET_KERNEL.0;

pub const SEQ_FIN_RECEIVED: u32 = types::seq_flags::SEQ_FIN_RECEIVED.0;
pub const SEQ_ALL_ACKED: u32 = types::seq_flags::SEQ_ALL_ACKED.0;

/// Indexes of the kernel side's `counters` array.
pub const CNT_RINGBUF_FULL: usize = types::counter::CNT_RINGBUF_FULL.0 as usize;
pub const CNT_RECOVERED: usize = types::counter::CNT_RECOVERED.0 as usize;
pub const CNT_TW_RINGBUF_FULL: usize = types::counter::CNT_TW_RINGBUF_FULL.0 as usize;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_has_no_hidden_padding() {
        // Every byte is a named field, so a zeroed record stays zeroed where
        // nothing is written (no stale bytes reach user space).
        let fields = 8 * 4 + 4 * 2 + 16 * 2 + 2 * 3 + 6 + 16 + 4 + 8;
        assert_eq!(std::mem::size_of::<RawEvent>(), fields);
        // The 64-bit field last is 8-byte aligned, as are ring records.
        assert_eq!(std::mem::offset_of!(RawEvent, cgroup_id) % 8, 0);
    }

    #[test]
    fn the_counters_have_no_hidden_padding_and_follow_the_record() {
        assert_eq!(std::mem::size_of::<RawCounters>(), 8 * 4 + 4 * 8);
        let with = std::mem::size_of::<types::event_counters>();
        assert_eq!(with, std::mem::size_of::<RawEvent>() + std::mem::size_of::<RawCounters>());
    }

    #[test]
    fn the_port_filters_hold_max_ports() {
        fn len<const N: usize>(_: fn(&types::rodata) -> &[u16; N]) -> usize {
            N
        }
        assert_eq!(len(|r| &r.lports), MAX_PORTS);
        assert_eq!(len(|r| &r.rports), MAX_PORTS);
    }
}
