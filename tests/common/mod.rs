//! Shared test harness, by role: the echo upstream, real gateway processes, raw HTTP,
//! the admin API, concurrent load, the stores and Redis, test certificates, the usual
//! configurations, and waiting.
#![allow(dead_code)]

mod admin;
mod backends;
mod certs;
mod configs;
mod gateway;
mod load;
mod raw_http;
mod upstream;
mod waiting;

// Each test binary uses part of the harness.
#[allow(unused_imports)]
pub use admin::*;
#[allow(unused_imports)]
pub use backends::*;
#[allow(unused_imports)]
pub use certs::*;
#[allow(unused_imports)]
pub use configs::*;
#[allow(unused_imports)]
pub use gateway::*;
#[allow(unused_imports)]
pub use load::*;
#[allow(unused_imports)]
pub use raw_http::*;
#[allow(unused_imports)]
pub use upstream::*;
#[allow(unused_imports)]
pub use waiting::*;
