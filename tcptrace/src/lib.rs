//! tcptrace: every TCP connection on the host, step by step, from eBPF.
//!
//! Data flows one way: kernel hook -> ring buffer -> [`events`] decode ->
//! [`output`] writer; [`loader`] sets up the kernel side, [`session`] runs it;
//! [`metrics`] counts what the session decodes, for Prometheus.
pub mod attach;
pub mod btf;
pub mod cgroups;
pub mod cli;
pub mod config;
pub mod error;
pub mod events;
pub mod filters;
pub mod identity;
pub mod lifecycle;
pub mod loader;
pub mod metrics;
pub mod model;
pub mod notice;
pub mod output;
pub mod pipeline;
pub mod priority;
pub mod privileges;
pub mod probe;
pub mod procfs;
pub mod programs;
pub mod services;
pub mod session;
pub mod snapshot;
pub mod sockdiag;
pub mod tracefs;
