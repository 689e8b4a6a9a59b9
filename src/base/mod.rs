//! The ground floor: settings as data, secrets, diagnostics and the config
//! file's small shapes. Nothing here imports another part of the crate.

pub mod diagnostics;
pub mod one_or_many;
pub mod secret;
pub mod settings;
