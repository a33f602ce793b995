//! The background writers: tasks that take what the data plane counted in memory to the
//! store, off the request path, and the scanner that announces expiring keys.

pub mod credit_balances;
pub mod expiry_scanner;
pub mod quota_keeper;
pub mod usage_flush;
