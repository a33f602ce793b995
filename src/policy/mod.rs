//! What a caller may do: client address, permissions, IP allowlists and rate limits.

pub mod client_addr;
pub mod ip_allowlist;
pub mod permissions;
pub mod rate_limit;
