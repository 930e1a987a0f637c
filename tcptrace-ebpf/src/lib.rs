//! Nothing here: the programs are the `tcptrace` binary (main.rs), built for
//! the bpf target by tcptrace/build.rs. This library exists so tcptrace can
//! name this crate as a build-dependency (see tcptrace/build.rs).
#![no_std]
