//! dockyard: back up and restore Docker container volumes, streaming tar through zstd into a
//! destination. The binary in `main.rs` is a thin shell around these modules.

pub mod agent;
pub mod archive;
pub mod binds;
pub mod cli;
pub mod commands;
pub mod config;
pub mod critical;
pub mod destination;
pub mod docker;
pub mod dumps;
pub mod encryption;
pub mod engine_ssh;
pub mod error;
pub mod fault;
pub mod index;
pub mod jobs;
pub mod last_run;
pub mod lease;
pub mod lock;
pub mod log_filter;
pub mod logs;
pub mod manifest;
pub mod notify;
pub mod ops;
pub mod outcome;
pub mod owner;
pub mod pipeline;
pub mod progress;
pub mod render;
pub mod retention;
pub mod schedule;
pub mod settings;
pub mod shell;
pub mod swap;
pub mod values;
