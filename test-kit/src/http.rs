//! Raw HTTP/1.1 over TCP, so that no client library hides or fixes the
//! bytes: a request written as given, the answer parsed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a read may wait for the server.
const READ_LIMIT: Duration = Duration::from_secs(10);

/// Sends `bytes` as they are and reads until the server closes.
pub fn send(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = connect(addr);
    s.write_all(bytes).expect("write the request");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).expect("read the answer");
    buf
}

/// Sends `bytes` and reads one answer: its head, then `Content-Length`
/// bytes, or else up to the close (a peer may keep the connection open
/// whatever it was asked).
pub fn exchange(addr: SocketAddr, bytes: &[u8]) -> Reply {
    let mut s = connect(addr);
    s.write_all(bytes).expect("write the request");
    let mut reader = BufReader::new(s);
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let n = reader.read_until(b'\n', &mut head).expect("read the head");
        assert!(
            n > 0,
            "closed in the head: {}",
            String::from_utf8_lossy(&head)
        );
    }
    let mut reply = Reply::parse(&head);
    let length = reply.header("content-length").and_then(|v| v.parse().ok());
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).expect("read the body");
        }
        None => {
            reader.read_to_end(&mut body).expect("read the body");
        }
    }
    reply.body = if reply.header("transfer-encoding") == Some("chunked") {
        dechunk(&body)
    } else {
        body
    };
    reply
}

/// `GET path` with `Host`, `Connection: close` and `headers`, one a line.
pub fn get(addr: SocketAddr, path: &str, headers: &[&str]) -> Reply {
    call(addr, "GET", path, headers, "")
}

/// `method path` with `headers` and `body`: see [`request`].
pub fn call(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &str) -> Reply {
    exchange(addr, request(addr, method, path, headers, body).as_bytes())
}

/// A request's text: `method path`, `Host` (the address it goes to),
/// `Connection: close`, `headers` (one a line), and `body` with its
/// `Content-Length` if there is one.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[&str], body: &str) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    if !body.is_empty() {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req + "\r\n" + body
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(READ_LIMIT))
        .expect("a read timeout");
    s
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Names in lower case, values trimmed, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// Parses a whole answer (a chunked body is put together).
    pub fn parse(raw: &[u8]) -> Reply {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(raw)));
        let head = String::from_utf8_lossy(&raw[..split]);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut reply = Reply {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        };
        if reply.header("transfer-encoding") == Some("chunked") {
            reply.body = dechunk(&reply.body);
        }
        reply
    }

    /// The first field `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

/// A chunked body's data (panics on a malformed one).
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size = std::str::from_utf8(&b[..end]).expect("an ASCII chunk size");
        let n = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + n]);
        b = &b[end + 4 + n..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_answer_is_put_together() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let r = Reply::parse(raw);
        assert_eq!((r.status, r.text().as_str()), (200, "abcde"));
        assert_eq!(r.header("x-a"), Some("1"));
    }

    #[test]
    fn requests_carry_their_body_length() {
        let to = "127.0.0.1:80".parse().unwrap();
        let r = request(to, "POST", "/p", &["Accept: */*"], "{}");
        assert_eq!(
            r,
            "POST /p HTTP/1.1\r\nHost: 127.0.0.1:80\r\nConnection: close\r\nAccept: */*\r\nContent-Length: 2\r\n\r\n{}"
        );
    }
}
