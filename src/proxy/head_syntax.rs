//! Decides whether a complete request head is well formed (RFC 9112) before pingora parses
//! it, so every malformed head gets `400 invalid_request` with a request id instead of a
//! bare 400: CRLF line endings only, no NUL, no obs-fold, header names without whitespace,
//! and unambiguous body framing (one plain `Content-Length`, or `Transfer-Encoding:
//! chunked` alone). The limits of SPEC section 9 live here too, with the scanner that
//! counts a head's lines as its bytes arrive, and are checked again on heads that arrive
//! pipelined behind another request.

use crate::denial::Denial;
use std::time::Duration;

/// The limits of SPEC section 9.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    pub deadline: Duration,
    pub max_request_line: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            deadline: Duration::from_secs(10),
            max_request_line: 8 * 1024,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
        }
    }
}

/// Counts the lines of one request head across reads. Pure, so it is tested alone.
#[derive(Debug, Clone, Default)]
pub struct HeadScanner {
    /// Lines finished so far; the request line is line 0.
    lines: usize,
    /// Bytes of the current, unfinished line.
    line_len: usize,
    /// Header bytes after the request line.
    header_bytes: usize,
    last_byte: u8,
}

/// What a chunk of bytes did to the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scan {
    /// More head to come.
    Partial,
    /// The empty line that ends the head was seen; the head ends after this many bytes
    /// of the chunk.
    Complete(usize),
    Refuse(Denial),
}

impl HeadScanner {
    pub fn feed(&mut self, data: &[u8], limits: &HeadLimits) -> Scan {
        let mut start = 0;
        for newline in memchr::memchr_iter(b'\n', data) {
            let segment = newline - start;
            let line_len = self.line_len + segment;
            let before = if segment > 0 {
                data[newline - 1]
            } else {
                self.last_byte
            };
            if before != b'\r' {
                return Scan::Refuse(Denial::BadRequest("header lines must end with CRLF"));
            }
            let content = line_len - 1;
            if self.lines == 0 {
                if content > limits.max_request_line {
                    return Scan::Refuse(Denial::UriTooLong);
                }
            } else {
                self.header_bytes += line_len + 1;
                if content == 0 {
                    return Scan::Complete(newline + 1);
                }
                if self.lines > limits.max_headers || self.header_bytes > limits.max_header_bytes {
                    return Scan::Refuse(Denial::HeadersTooLarge);
                }
            }
            // A blank line before the request line is tolerated (RFC 9112 section 2.2).
            if !(self.lines == 0 && content == 0) {
                self.lines += 1;
            }
            self.line_len = 0;
            self.last_byte = b'\n';
            start = newline + 1;
        }
        let rest = data.len() - start;
        if rest > 0 {
            self.line_len += rest;
            self.last_byte = data[data.len() - 1];
        }
        if self.lines == 0 && self.line_len > limits.max_request_line + 1 {
            return Scan::Refuse(Denial::UriTooLong);
        }
        if self.lines > 0 && self.header_bytes + self.line_len > limits.max_header_bytes {
            return Scan::Refuse(Denial::HeadersTooLarge);
        }
        Scan::Partial
    }
}

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
    } else if memchr::memchr(b'_', name).is_some() && is_framing(name) {
        return Err(Denial::BadRequest(
            "a framing header spelled with '_' is refused: send Content-Length or Transfer-Encoding",
        ));
    }
    Ok(())
}

/// Whether `name`, with each `_` read as `-`, is `Content-Length` or `Transfer-Encoding`:
/// the spellings a proxy that folds `_` into `-` would take for framing (SPEC section 12).
pub fn is_framing(name: &[u8]) -> bool {
    let same_as = |target: &[u8]| {
        name.len() == target.len()
            && name.iter().zip(target).all(|(a, b)| {
                let a = if *a == b'_' {
                    b'-'
                } else {
                    a.to_ascii_lowercase()
                };
                a == *b
            })
    };
    same_as(b"content-length") || same_as(b"transfer-encoding")
}

/// `tchar` of RFC 9110 section 5.6.2.
fn is_token_char(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// The limits of SPEC section 9 on a head that arrived decoded (HTTP/2's HPACK): each
/// stream's request line and header section are counted as HTTP/1.1 would write them, so
/// both protocols refuse at the same sizes. Framing is HTTP/2's own and not checked here.
pub fn check_decoded_head<'a>(
    method: &str,
    target: &str,
    headers: impl Iterator<Item = (&'a str, &'a [u8])>,
    limits: &HeadLimits,
) -> Result<(), Denial> {
    // `METHOD SP target SP HTTP/1.1`
    if method.len() + 1 + target.len() + 9 > limits.max_request_line {
        return Err(Denial::UriTooLong);
    }
    // The empty line that ends the head.
    let mut header_bytes = 2;
    for (count, (name, value)) in headers.enumerate() {
        header_bytes += name.len() + 2 + value.len() + 2;
        if count + 1 > limits.max_headers || header_bytes > limits.max_header_bytes {
            return Err(Denial::HeadersTooLarge);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `framing.rs` checked pingora's parsed copy of each head for the framing shapes
    /// below. Every one of them is refused here, on the raw head, before pingora parses
    /// it; the head guard runs this on every head and the proxy on every pipelined one,
    /// so that second check was redundant and is gone.
    #[test]
    fn every_framing_shape_the_parsed_head_check_refused_is_refused_on_the_raw_head() {
        let head = |headers: &[&str]| {
            let mut text = String::from("POST / HTTP/1.1\r\nHost: a\r\n");
            for header in headers {
                text.push_str(header);
                text.push_str("\r\n");
            }
            text.push_str("\r\n");
            text.into_bytes()
        };
        let refused: &[&[&str]] = &[
            &["Content-Length: 1", "Content-Length: 1"],
            &["Content-Length: 1, 2"],
            &["Content-Length: +1"],
            &["Content-Length: "],
            &["Transfer-Encoding: chunked, chunked"],
            &["Transfer-Encoding: xchunked"],
            &["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"],
            &["Content-Length: 4", "Transfer-Encoding: chunked"],
            &["Transfer-Encoding: chunked", "Content-Length: 4"],
            // SPEC 12: framing spelled with `_` is refused, not forwarded.
            &["Transfer_Encoding: chunked", "Content-Length: 4"],
            &["Content_Length: 4"],
            &["transfer_encoding: chunked"],
        ];
        for headers in refused {
            let result = check_head(&head(headers), &HeadLimits::default());
            assert!(
                matches!(result, Err(Denial::BadRequest(_))),
                "{headers:?}: {result:?}"
            );
        }
        let fine: &[&[&str]] = &[
            &[],
            &["Content-Length: 10"],
            &["Transfer-Encoding: chunked"],
            &["X_Custom_Header: 1"],
        ];
        for headers in fine {
            assert!(
                check_head(&head(headers), &HeadLimits::default()).is_ok(),
                "{headers:?}"
            );
        }
    }

    fn feed_all(chunks: &[&[u8]]) -> Scan {
        let limits = HeadLimits::default();
        let mut scanner = HeadScanner::default();
        let mut last = Scan::Partial;
        for chunk in chunks {
            last = scanner.feed(chunk, &limits);
            if last != Scan::Partial {
                break;
            }
        }
        last
    }

    #[test]
    fn a_normal_head_completes_in_one_read_or_many() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n";
        assert!(matches!(feed_all(&[head]), Scan::Complete(_)));
        let bytes: Vec<&[u8]> = head.chunks(1).collect();
        assert!(matches!(feed_all(&bytes), Scan::Complete(_)));
        assert_eq!(feed_all(&[b"GET / HTTP/1.1\r\nHost: a\r"]), Scan::Partial);
    }

    #[test]
    fn body_bytes_after_the_head_are_not_counted() {
        let mut data = b"POST / HTTP/1.1\r\nContent-Length: 40000\r\n\r\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 40_000));
        assert_eq!(feed_all(&[&data]), Scan::Complete(data.len() - 40_000));
    }

    #[test]
    fn bare_lf_is_refused() {
        assert!(matches!(
            feed_all(&[b"GET / HTTP/1.1\nHost: a\n\n"]),
            Scan::Refuse(Denial::BadRequest(_))
        ));
        assert!(matches!(
            feed_all(&[b"GET / HTTP/1.1\r\nHost: a\n\r\n"]),
            Scan::Refuse(Denial::BadRequest(_))
        ));
    }

    #[test]
    fn long_request_lines_get_414_without_waiting_for_the_end() {
        let mut line = b"GET /".to_vec();
        line.extend(std::iter::repeat_n(b'a', 9000));
        assert_eq!(feed_all(&[&line]), Scan::Refuse(Denial::UriTooLong));
    }

    #[test]
    fn too_many_or_too_large_headers_get_431() {
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..101 {
            many.extend(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(feed_all(&[&many]), Scan::Refuse(Denial::HeadersTooLarge));

        let mut large = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        large.extend(std::iter::repeat_n(b'a', 33 * 1024));
        assert_eq!(feed_all(&[&large]), Scan::Refuse(Denial::HeadersTooLarge));
    }

    #[test]
    fn exactly_at_the_limits_is_allowed() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            head.extend(format!("X-{i:03}: v\r\n").as_bytes());
        }
        head.extend(b"\r\n");
        assert!(matches!(feed_all(&[&head]), Scan::Complete(_)));
    }

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

    #[test]
    fn decoded_heads_are_held_to_the_sizes_an_http1_head_is() {
        let limits = HeadLimits::default();
        let value = [b'v'; 100];
        let few = [("a", &value[..]); 10];
        assert_eq!(
            check_decoded_head("GET", "/", few.into_iter(), &limits),
            Ok(())
        );
        let long_target = format!("/{}", "x".repeat(8 * 1024));
        assert_eq!(
            check_decoded_head("GET", &long_target, std::iter::empty(), &limits),
            Err(Denial::UriTooLong)
        );
        let many = vec![("a", &b"1"[..]); 101];
        assert_eq!(
            check_decoded_head("GET", "/", many.into_iter(), &limits),
            Err(Denial::HeadersTooLarge)
        );
        let hundred = vec![("a", &b"1"[..]); 100];
        assert_eq!(
            check_decoded_head("GET", "/", hundred.into_iter(), &limits),
            Ok(())
        );
        let big = vec![b'v'; 33 * 1024];
        assert_eq!(
            check_decoded_head("GET", "/", [("big", &big[..])].into_iter(), &limits),
            Err(Denial::HeadersTooLarge)
        );
    }
}
