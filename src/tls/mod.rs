//! TLS on the listeners that face clients (SPEC section 13): certificates read from PEM
//! files and chosen by SNI, the handshake and its metrics, reloads on `SIGHUP`, and what a
//! verified client certificate tells the upstream.

pub mod certificates;
pub mod client_cert;
pub mod inspect;
pub mod metrics;
pub mod reload;
pub mod self_signed;
pub mod server_names;
pub mod terminator;

pub use terminator::{Terminator, TlsError, TlsSource};
