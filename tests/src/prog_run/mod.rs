//! BPF_PROG_TEST_RUN fixtures shared by the `prog_run*` test binaries:
//! `harness` (a private namespace with the interfaces the programs look up,
//! a freshly loaded object with unpinned maps, runners for each program),
//! `pkt` (hand-written packet builders and an independent RFC 1071
//! checksum), `frames` (frames and assertions the tests share); `ip6` and
//! `pkt6` the same for IPv6 (the dual-stack maps and the tail-called
//! `dp_from_container6`, IPv6 packet builders); `v6n` (IPv6 north-south:
//! packet builders and the north-south maps).
pub mod frames;
pub mod harness;
pub mod ip6;
pub mod pkt;
pub mod pkt6;
pub mod v6n;
