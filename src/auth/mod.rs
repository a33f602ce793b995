//! Who is calling: credential formats and their checks.

pub mod api_key;
pub mod base62;
pub mod credential;
pub mod jwks;
pub mod jwt;
pub mod password;
pub mod signing;
