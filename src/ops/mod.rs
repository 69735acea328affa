//! Running an installation for years: backups and restore, the master key's check, and `doctor`.
pub mod backup;
pub mod doctor;
pub mod key_check;
