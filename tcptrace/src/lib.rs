//! tcptrace: every TCP connection on the host, step by step, from eBPF.
//!
//! Data flows one way: kernel hook -> ring buffer -> [`events`] decode ->
//! [`output`] writer; [`loader`] sets up the kernel side, [`session`] runs it.
pub mod attach;
pub mod btf;
pub mod cli;
pub mod config;
pub mod error;
pub mod events;
pub mod filters;
pub mod lifecycle;
pub mod loader;
pub mod model;
pub mod output;
pub mod privileges;
pub mod probe;
pub mod procfs;
pub mod session;
pub mod sockdiag;
pub mod tracefs;
