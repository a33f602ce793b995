//! Decides whether a complete request head is well formed (RFC 9112) before pingora parses
//! it, so every malformed head gets `400 invalid_request` with a request id instead of a
//! bare 400: CRLF line endings only, no NUL, no obs-fold, header names without whitespace,
//! and unambiguous body framing (one plain `Content-Length`, or `Transfer-Encoding:
//! chunked` alone). The limits of SPEC section 9 are checked here too, for heads that
//! arrive pipelined behind another request.

use super::head_guard::HeadLimits;
use crate::denial::Denial;

/// The body a well-formed head announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// Exactly this many bytes (0 without `Content-Length` or `Transfer-Encoding`).
    Length(u64),
    /// Chunked: its end is known only by reading it.
    Chunked,
}

/// Checks the head `head` (request line, header lines and the empty line that ends them).
pub fn check_head(head: &[u8], limits: &HeadLimits) -> Result<Body, Denial> {
    if memchr::memchr(0, head).is_some() {
        return Err(Denial::BadRequest(
            "NUL bytes are not allowed in a request head",
        ));
    }
    let mut framing = Framing::default();
    let mut headers = 0usize;
    let mut header_bytes = 0usize;
    let mut start = 0;
    let mut request_line = true;
    for newline in memchr::memchr_iter(b'\n', head) {
        let line = &head[start..newline];
        start = newline + 1;
        let Some(content) = line.strip_suffix(b"\r") else {
            return Err(Denial::BadRequest("header lines must end with CRLF"));
        };
        if memchr::memchr(b'\r', content).is_some() {
            return Err(Denial::BadRequest(
                "a bare CR is not allowed in a request head",
            ));
        }
        if request_line {
            // A blank line before the request line is tolerated (RFC 9112 section 2.2).
            if content.is_empty() {
                continue;
            }
            if content.len() > limits.max_request_line {
                return Err(Denial::UriTooLong);
            }
            request_line = false;
            continue;
        }
        header_bytes += line.len() + 1;
        if content.is_empty() {
            return framing.check();
        }
        headers += 1;
        if headers > limits.max_headers || header_bytes > limits.max_header_bytes {
            return Err(Denial::HeadersTooLarge);
        }
        header_line(content, &mut framing)?;
    }
    Err(Denial::BadRequest("the request head is incomplete"))
}

/// What the head says about its body.
#[derive(Debug, Default)]
struct Framing {
    content_lengths: usize,
    length: u64,
    transfer_encodings: usize,
}

impl Framing {
    fn check(&self) -> Result<Body, Denial> {
        if self.content_lengths > 1 {
            return Err(Denial::BadRequest(
                "send one Content-Length with a plain decimal value",
            ));
        }
        if self.transfer_encodings > 1 {
            return Err(Denial::BadRequest(
                "the only Transfer-Encoding accepted is chunked",
            ));
        }
        if self.content_lengths == 1 && self.transfer_encodings == 1 {
            return Err(Denial::BadRequest(
                "send either Content-Length or Transfer-Encoding, not both",
            ));
        }
        Ok(match self.transfer_encodings {
            0 => Body::Length(self.length),
            _ => Body::Chunked,
        })
    }
}

fn header_line(line: &[u8], framing: &mut Framing) -> Result<(), Denial> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(Denial::BadRequest(
            "folded header lines (obs-fold) are not allowed",
        ));
    }
    let Some(colon) = memchr::memchr(b':', line) else {
        return Err(Denial::BadRequest("a header line has no colon"));
    };
    let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
    if name.is_empty() || !name.iter().all(|b| is_token_char(*b)) {
        return Err(Denial::BadRequest(
            "a header name holds characters other than a token's (a space before the colon?)",
        ));
    }
    if name.eq_ignore_ascii_case(b"content-length") {
        framing.content_lengths += 1;
        let plain = (1..=18).contains(&value.len()) && value.iter().all(u8::is_ascii_digit);
        framing.length = std::str::from_utf8(value)
            .ok()
            .filter(|_| plain)
            .and_then(|digits| digits.parse().ok())
            .ok_or(Denial::BadRequest(
                "send one Content-Length with a plain decimal value",
            ))?;
    } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
        framing.transfer_encodings += 1;
        if !value.eq_ignore_ascii_case(b"chunked") {
            return Err(Denial::BadRequest(
                "the only Transfer-Encoding accepted is chunked",
            ));
        }
    }
    Ok(())
}

/// `tchar` of RFC 9110 section 5.6.2.
fn is_token_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(head: &[u8]) -> Result<Body, Denial> {
        check_head(head, &HeadLimits::default())
    }

    fn refused(head: &[u8]) -> bool {
        matches!(check(head), Err(Denial::BadRequest(_)))
    }

    #[test]
    fn ordinary_heads_pass() {
        assert_eq!(
            check(b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b c\r\n\r\n"),
            Ok(Body::Length(0))
        );
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n"),
            Ok(Body::Length(12))
        );
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n"),
            Ok(Body::Chunked)
        );
        assert_eq!(
            check(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Body::Length(0))
        );
    }

    #[test]
    fn malformed_lines_are_refused() {
        assert!(refused(b"GET / HTTP/1.1\nHost: a\n\n"));
        assert!(refused(b"GET / HTTP/1.1\r\nX-Nul: a\0b\r\n\r\n"));
        assert!(refused(b"GET / HTTP/1.1\r\nX-Folded: a\r\n  b\r\n\r\n"));
        assert!(refused(b"GET / HTTP/1.1\r\nX-Folded: a\r\n\tb\r\n\r\n"));
        assert!(refused(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"));
        assert!(refused(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"));
        assert!(refused(b"GET / HTTP/1.1\r\n: empty name\r\n\r\n"));
        assert!(refused(b"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n"));
        assert!(refused(b"GET / HTTP/1.1\r\nHost: a\r\n"));
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        for head in [
            &b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        ] {
            assert!(refused(head), "{}", String::from_utf8_lossy(head));
        }
    }

    #[test]
    fn limits_hold_for_pipelined_heads_too() {
        let mut long = b"GET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', 9000));
        long.extend(b" HTTP/1.1\r\n\r\n");
        assert_eq!(check(&long), Err(Denial::UriTooLong));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..101 {
            many.extend(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(check(&many), Err(Denial::HeadersTooLarge));
        many.truncate(many.len() - b"X-100: v\r\n\r\n".len());
        many.extend(b"\r\n");
        assert_eq!(check(&many), Ok(Body::Length(0)));
    }

    proptest! {
        /// Whatever the bytes, the checker answers without panicking, and never accepts a
        /// head with a NUL or a line that does not end in CRLF.
        #[test]
        fn never_panics_and_accepts_only_clean_heads(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if check(&bytes).is_ok() {
                prop_assert!(!bytes.contains(&0));
                let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").map_or(bytes.len(), |p| p + 4);
                let head = &bytes[..end];
                for (i, b) in head.iter().enumerate() {
                    if *b == b'\n' {
                        prop_assert!(i > 0 && head[i - 1] == b'\r');
                    }
                }
            }
        }
    }
}
