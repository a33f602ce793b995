//! Reads the request a proxy asks about (SPEC section 12): its method, its URI and the
//! credential headers, from what nginx, Caddy, Traefik and Envoy send. Pure, so every
//! header order is tested alone.

use crate::denial::Denial;
use crate::proxy::head_syntax::is_framing;
use http::{HeaderMap, Method, Uri};

/// Which endpoint was asked, and what it tells of the original path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint<'a> {
    /// `/verify`, or `/verify/{path}` with the original path after the prefix (Envoy's
    /// `path_prefix`), query included.
    Verify { tail: Option<&'a str> },
    /// `/nginx`, for `auth_request`.
    Nginx,
}

impl<'a> Endpoint<'a> {
    /// The endpoint of a forward-auth request URI; `None` for any other path.
    pub fn of(uri: &'a Uri) -> Option<Endpoint<'a>> {
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        match uri.path() {
            "/verify" => Some(Endpoint::Verify { tail: None }),
            "/nginx" => Some(Endpoint::Nginx),
            path if path.starts_with("/verify/") => Some(Endpoint::Verify {
                tail: Some(&path_and_query["/verify".len()..]),
            }),
            _ => None,
        }
    }
}

/// The request the proxy is asking about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub method: Method,
    /// The path as sent (before normalisation).
    pub path: String,
}

/// The original method and path: `X-Forwarded-*` first, then `X-Original-*`, then what
/// the endpoint itself says. A name with `_` is never read; a framing header spelled with
/// one is refused, as on the data plane.
pub fn original(
    headers: &HeaderMap,
    method: &Method,
    endpoint: Endpoint<'_>,
) -> Result<Original, Denial> {
    if headers
        .keys()
        .any(|name| name.as_str().contains('_') && is_framing(name.as_str().as_bytes()))
    {
        return Err(Denial::BadRequest(
            "a framing header spelled with '_' is refused: send Content-Length or Transfer-Encoding",
        ));
    }
    let first = |names: [&str; 2]| names.into_iter().find_map(|name| headers.get(name));
    let method = match first(["x-forwarded-method", "x-original-method"]) {
        None => method.clone(),
        Some(value) => Method::from_bytes(value.as_bytes())
            .map_err(|_| Denial::BadRequest("X-Forwarded-Method is not an HTTP method"))?,
    };
    let uri = match first(["x-forwarded-uri", "x-original-uri"]) {
        Some(value) => value
            .to_str()
            .map_err(|_| Denial::BadRequest("X-Forwarded-Uri is not a request URI"))?,
        None => match endpoint {
            Endpoint::Verify { tail: Some(tail) } => tail,
            _ => {
                return Err(Denial::BadRequest(
                    "say which request to check: send X-Forwarded-Uri or X-Original-URI, or ask /verify/{path}",
                ))
            }
        },
    };
    // The path of a request URI, or of an absolute URI a proxy may send instead; the
    // query is not read (credentials in it are ignored everywhere).
    let path = match uri.parse::<Uri>() {
        Ok(parsed) if uri.starts_with('/') || parsed.scheme().is_some() => {
            parsed.path().to_string()
        }
        _ => return Err(Denial::BadRequest("X-Forwarded-Uri is not a request URI")),
    };
    Ok(Original { method, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn read(pairs: &[(&str, &str)], method: Method, uri: &str) -> Result<Original, Denial> {
        let uri: Uri = uri.parse().unwrap();
        let endpoint = Endpoint::of(&uri).unwrap();
        original(&headers(pairs), &method, endpoint)
    }

    fn ok(method: Method, path: &str) -> Result<Original, Denial> {
        Ok(Original {
            method,
            path: path.into(),
        })
    }

    #[test]
    fn forwarded_headers_first_then_original_ones_then_the_path() {
        let both = [
            ("x-forwarded-method", "POST"),
            ("x-original-method", "PUT"),
            ("x-forwarded-uri", "/v1/a?x=1"),
            ("x-original-uri", "/v1/b"),
        ];
        assert_eq!(
            read(&both, Method::GET, "/verify"),
            ok(Method::POST, "/v1/a")
        );
        let nginx = [("x-original-method", "DELETE"), ("x-original-uri", "/v1/b")];
        assert_eq!(
            read(&nginx, Method::GET, "/nginx"),
            ok(Method::DELETE, "/v1/b")
        );
        // Envoy: the original method, and the path after the prefix.
        assert_eq!(
            read(&[], Method::PATCH, "/verify/v1/c?q=1"),
            ok(Method::PATCH, "/v1/c")
        );
        let absolute = [("x-forwarded-uri", "https://api.example.com/v1/d")];
        assert_eq!(
            read(&absolute, Method::GET, "/verify"),
            ok(Method::GET, "/v1/d")
        );
    }

    #[test]
    fn a_bare_verify_or_a_bad_header_is_invalid_request() {
        for (pairs, uri) in [
            (&[][..], "/verify"),
            (&[][..], "/nginx"),
            (&[("x-forwarded-uri", "v1/no-slash")][..], "/verify"),
            (&[("x-forwarded-method", "GE T")][..], "/verify/v1"),
        ] {
            let result = read(pairs, Method::GET, uri);
            assert!(
                matches!(result, Err(Denial::BadRequest(_))),
                "{pairs:?} {uri}"
            );
        }
        assert_eq!(Endpoint::of(&"/other".parse().unwrap()), None);
    }

    #[test]
    fn underscored_names_are_never_read_and_framing_with_one_is_refused() {
        let sneaky = [("x_forwarded_uri", "/admin"), ("x-forwarded-uri", "/v1/a")];
        assert_eq!(
            read(&sneaky, Method::GET, "/verify"),
            ok(Method::GET, "/v1/a")
        );
        let smuggle = [
            ("x-forwarded-uri", "/v1/a"),
            ("transfer_encoding", "chunked"),
        ];
        assert!(matches!(
            read(&smuggle, Method::GET, "/verify"),
            Err(Denial::BadRequest(_))
        ));
    }
}
