//! BPF_PROG_TEST_RUN fixtures shared by the `prog_run*` test binaries:
//! `harness` (a private namespace with the interfaces the programs look up,
//! a freshly loaded object with unpinned maps, runners for each program) and
//! `pkt` (hand-written packet builders and an independent RFC 1071
//! checksum); `v6n` (IPv6 north-south: packet builders and the IPv6 maps).
pub mod harness;
pub mod pkt;
pub mod v6n;
