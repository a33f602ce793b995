//! Refuses requests whose body framing is ambiguous (SPEC section 9): the smuggling shapes
//! pingora would otherwise repair and forward.

use crate::denial::Denial;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use pingora::http::RequestHeader;

/// Checks `Content-Length` and `Transfer-Encoding`. `raw_head` is consulted only when a
/// `Transfer-Encoding` is present, because pingora drops a `Content-Length` sent beside it.
pub fn check_framing(
    request: &RequestHeader,
    raw_head: impl FnOnce() -> Vec<u8>,
) -> Result<(), Denial> {
    let headers = &request.headers;
    let mut lengths = headers.get_all(CONTENT_LENGTH).iter();
    if let Some(first) = lengths.next() {
        let valid = !first.is_empty() && first.as_bytes().iter().all(u8::is_ascii_digit);
        if lengths.next().is_some() || !valid {
            return Err(Denial::BadRequest(
                "send one Content-Length with a plain decimal value",
            ));
        }
    }
    let mut encodings = headers.get_all(TRANSFER_ENCODING).iter();
    if let Some(encoding) = encodings.next() {
        let chunked_only = encoding
            .as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(b"chunked");
        if encodings.next().is_some() || !chunked_only {
            return Err(Denial::BadRequest(
                "the only Transfer-Encoding accepted is chunked",
            ));
        }
        if has_content_length_line(&raw_head()) {
            return Err(Denial::BadRequest(
                "send either Content-Length or Transfer-Encoding, not both",
            ));
        }
    }
    Ok(())
}

fn has_content_length_line(head: &[u8]) -> bool {
    const NAME: &[u8] = b"content-length:";
    head.split(|byte| *byte == b'\n')
        .skip(1)
        .any(|line| line.len() >= NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> RequestHeader {
        let mut request = RequestHeader::build("POST", b"/", None).unwrap();
        for (name, value) in headers {
            request.append_header(name.to_string(), *value).unwrap();
        }
        request
    }

    fn check(headers: &[(&str, &str)], raw: &str) -> Result<(), Denial> {
        check_framing(&request(headers), || raw.as_bytes().to_vec())
    }

    #[test]
    fn plain_framing_passes() {
        assert!(check(&[], "").is_ok());
        assert!(check(&[("content-length", "10")], "").is_ok());
        assert!(check(
            &[("transfer-encoding", "chunked")],
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .is_ok());
    }

    #[test]
    fn ambiguous_framing_is_refused() {
        assert!(check(&[("content-length", "1"), ("content-length", "1")], "").is_err());
        assert!(check(&[("content-length", "1, 2")], "").is_err());
        assert!(check(&[("content-length", "+1")], "").is_err());
        assert!(check(&[("transfer-encoding", "chunked, chunked")], "").is_err());
        assert!(check(&[("transfer-encoding", "xchunked")], "").is_err());
        assert!(check(
            &[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "chunked")
            ],
            ""
        )
        .is_err());
        let both = "POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(check(&[("transfer-encoding", "chunked")], both).is_err());
    }
}
