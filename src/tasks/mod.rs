//! The background writers: tasks that take what the data plane counted in memory to the
//! store, off the request path.

pub mod quota_keeper;
pub mod usage_flush;
