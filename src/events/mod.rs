//! Events (SPEC section 14): which change announces what, and its delivery to webhook
//! endpoints, signed as the Standard Webhooks specification says. The outbox itself is in
//! the store: each event is written in the transaction of the change it describes.

pub mod backoff;
pub mod catalog;
pub mod delivery;
pub mod destination;
pub mod signature;
