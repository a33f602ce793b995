//! tollgate: a reverse-proxy authentication gateway. The binary is wiring; everything it
//! runs is here, so tests and benches start the same server users start.

pub mod access_log;
pub mod admin;
pub mod admin_access;
pub mod analytics;
pub mod auth;
pub mod checkpoint;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod denial;
pub mod echo;
pub mod events;
pub mod forward_auth;
pub mod fuzzing;
pub mod gate;
pub mod leak_reports;
pub mod lifecycle;
pub mod listener;
pub mod metrics;
pub mod oauth;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod reply;
pub mod routes;
pub mod server;
pub mod short_id;
pub mod store;
pub mod tasks;
pub mod tls;
pub mod usage;
