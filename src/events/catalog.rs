//! The event types of SPEC section 14, which audited change announces which, and which
//! endpoint filter takes which type.

/// Every event type, in the order SPEC section 14 lists them.
pub const TYPES: &[&str] = &[
    "key.created",
    "key.updated",
    "key.rotated",
    "key.revoked",
    "key.expiring",
    "key.expired",
    "key.leaked",
    "quota.exceeded",
    "client.created",
    "client.deleted",
    "policy.updated",
    "operator.created",
    "operator.updated",
    "webhook.test",
];

/// The events an audited action announces: the audit entry and its events are written
/// in the same transaction, so no change commits without them. A leaked key revoked by a
/// report is a revocation and a leak; a leak reported with `action: notify` only a leak.
pub fn announced_by(action: &str) -> &'static [&'static str] {
    match action {
        "key.create" => &["key.created"],
        "key.update" => &["key.updated"],
        "key.rotate" => &["key.rotated"],
        "key.revoke" => &["key.revoked"],
        "key.leak.revoke" => &["key.revoked", "key.leaked"],
        "key.leak.notify" => &["key.leaked"],
        "client.create" => &["client.created"],
        "client.delete" => &["client.deleted"],
        "policy.update" => &["policy.updated"],
        "operator.create" => &["operator.created"],
        "operator.update" => &["operator.updated"],
        _ => &[],
    }
}

pub fn is_type(name: &str) -> bool {
    TYPES.contains(&name)
}

/// Whether an endpoint whose `events` filter is `filter` takes an event of type `kind`.
/// `webhook.test` is sent only by `POST /webhooks/{id}/test`, to that endpoint.
pub fn takes(filter: &[String], kind: &str) -> bool {
    kind != "webhook.test" && filter.iter().any(|f| f == "*" || f == kind)
}

/// Checks an endpoint's `events` filter: a non-empty list of known types, or `["*"]`.
pub fn check_filter(filter: &[String]) -> Result<(), String> {
    if filter.is_empty() {
        return Err("events must list at least one event type, or be [\"*\"]".into());
    }
    if filter.iter().any(|f| f == "*") && filter.len() > 1 {
        return Err("events is [\"*\"] alone, or a list of event types".into());
    }
    match filter.iter().find(|f| *f != "*" && !is_type(f)) {
        Some(unknown) => Err(format!(
            "unknown event type \"{unknown}\"; the types are {}",
            TYPES.join(", ")
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_announced_event_is_a_known_type() {
        for action in [
            "key.create",
            "key.update",
            "key.rotate",
            "key.revoke",
            "key.leak.revoke",
            "key.leak.notify",
            "client.create",
            "client.delete",
            "policy.update",
            "operator.create",
            "operator.update",
        ] {
            let announced = announced_by(action);
            assert!(!announced.is_empty(), "{action} announces nothing");
            assert!(announced.iter().all(|t| is_type(t)), "{action}");
        }
        assert!(announced_by("session.create").is_empty());
        assert!(announced_by("token.create").is_empty());
    }

    #[test]
    fn filters_take_what_they_name() {
        let all = vec!["*".to_string()];
        let revoked = vec!["key.revoked".to_string()];
        assert!(takes(&all, "key.created"));
        assert!(!takes(&all, "webhook.test"));
        assert!(takes(&revoked, "key.revoked"));
        assert!(!takes(&revoked, "key.created"));
    }

    #[test]
    fn filters_are_checked() {
        assert!(check_filter(&["*".into()]).is_ok());
        assert!(check_filter(&["key.revoked".into(), "quota.exceeded".into()]).is_ok());
        assert!(check_filter(&[]).is_err());
        assert!(check_filter(&["*".into(), "key.revoked".into()]).is_err());
        let unknown = check_filter(&["key.deleted".into()]).unwrap_err();
        assert!(unknown.contains("key.deleted"), "{unknown}");
    }
}
