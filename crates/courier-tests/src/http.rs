//! A bare HTTP client for the plain-HTTP ports tests talk to: courier's admin port and the Prometheus server the
//! SLO test starts. HTTP/1.0 on purpose: the server answers with the whole body and closes, never chunked.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `method path` on `addr` (`host:port`); the status code and the body.
///
/// # Panics
/// When the server cannot be reached or the answer is not an HTTP response: tests want that loud.
pub async fn request(addr: &str, method: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    let request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a complete HTTP response");
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status line");
    (status, body.to_owned())
}

/// A GET (see [`request`]).
pub async fn get(addr: &str, path: &str) -> (u16, String) {
    request(addr, "GET", path).await
}

/// Whether anything accepts connections on `addr` yet.
pub async fn listening(addr: &str) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok()
}
