//! Log rotation and shipping, the pure parts: how an app is told to reopen its files, how rotated
//! files and shipped objects are named, and the shell scripts helpers run inside the log volume.
//! `commands/logs.rs` puts them together with the engine and a destination.

pub mod held_open;
pub mod naming;
pub mod reopen;
pub mod scripts;
pub mod volume;
