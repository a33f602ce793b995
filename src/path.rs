//! Normalises request paths, so routing, permission checks and the forwarded path agree,
//! and matches them against route prefixes.

use std::borrow::Cow;

/// `/v1/accounts` covers `/v1/accounts` and `/v1/accounts/42`, not `/v1/accountsx`.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    BadPercentEncoding,
}

impl PathError {
    pub fn reason(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the request path must start with /",
            PathError::BadPercentEncoding => "the request path has an invalid percent-encoding",
        }
    }
}

/// Decodes percent-encoded unreserved characters, upper-cases the remaining escapes,
/// collapses `//`, and resolves `.` and `..` segments (never above the root).
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(path.as_bytes()) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    Ok(Cow::Owned(remove_dot_segments(&decoded)))
}

/// True when nothing needs rewriting: no escapes, no empty, `.` or `..` segments.
fn is_normal(bytes: &[u8]) -> bool {
    let mut previous = b'/';
    for (index, &byte) in bytes.iter().enumerate().skip(1) {
        match byte {
            b'%' => return false,
            b'/' if previous == b'/' => return false,
            b'.' if previous == b'/' => {
                let rest = &bytes[index..];
                let segment = rest.split(|b| *b == b'/').next().unwrap_or_default();
                if segment == b"." || segment == b".." {
                    return false;
                }
            }
            _ => {}
        }
        previous = byte;
    }
    true
}

fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte != b'%' {
            out.push(byte as char);
            index += 1;
            continue;
        }
        let hex = bytes
            .get(index + 1..index + 3)
            .ok_or(PathError::BadPercentEncoding)?;
        let value = std::str::from_utf8(hex)
            .ok()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .filter(|_| hex.iter().all(u8::is_ascii_hexdigit))
            .ok_or(PathError::BadPercentEncoding)?;
        if value.is_ascii_alphanumeric() || matches!(value, b'-' | b'.' | b'_' | b'~') {
            out.push(value as char);
        } else {
            out.push('%');
            out.push_str(&format!("{value:02X}"));
        }
        index += 3;
    }
    Ok(out)
}

fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    for segment in path.split('/').skip(1) {
        trailing_slash = matches!(segment, "" | "." | "..");
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || segments.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn n(path: &str) -> String {
        normalize(path).unwrap().into_owned()
    }

    #[test]
    fn leaves_normal_paths_alone() {
        assert!(matches!(normalize("/v1/accounts/42"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/v1/a.b/..c/"), Ok(Cow::Borrowed(_))));
        assert_eq!(n("/"), "/");
    }

    #[test]
    fn the_attack_paths_normalise_to_what_is_forwarded() {
        assert_eq!(n("/%61ccounts"), "/accounts");
        assert_eq!(n("//v1/accounts"), "/v1/accounts");
        assert_eq!(n("/v1/public/../accounts"), "/v1/accounts");
        assert_eq!(n("/v1/public/%2e%2e/accounts"), "/v1/accounts");
        assert_eq!(n("/v1/./accounts/"), "/v1/accounts/");
        assert_eq!(n("/../../etc"), "/etc");
        assert_eq!(n("/v1/accounts/.."), "/v1/");
        assert_eq!(n("/v1/accounts;x"), "/v1/accounts;x");
    }

    #[test]
    fn keeps_reserved_escapes_upper_cased() {
        assert_eq!(n("/a%2fb"), "/a%2Fb");
        assert_eq!(n("/a%20b"), "/a%20b");
    }

    #[test]
    fn refuses_broken_paths() {
        assert_eq!(normalize("/a%zz"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalize("/a%2"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalize("/a%+1"), Err(PathError::BadPercentEncoding));
        assert_eq!(normalize("*"), Err(PathError::NotAbsolute));
    }

    proptest! {
        #[test]
        fn normalising_is_idempotent(path in "/[a-z./%0-9A-F]{0,40}") {
            if let Ok(once) = normalize(&path) {
                let twice = normalize(&once).unwrap().into_owned();
                prop_assert_eq!(once.into_owned(), twice);
            }
        }

        #[test]
        fn never_leaves_dot_segments(path in "/[a-z./]{0,40}") {
            let out = n(&path);
            prop_assert!(!out.split('/').any(|s| s == "." || s == ".."));
            prop_assert!(!out.contains("//"));
        }
    }
}
