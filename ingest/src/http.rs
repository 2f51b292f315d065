//! The small HTTP/1.1 endpoint of lake's own services — `/metrics` and `/health` of `lake ingest`,
//! the embedded schema registry of `lake demo` and the benches: GET and HEAD only, one request per
//! connection, a bounded number of connections, each with 5 s and 16 KiB for its request head.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 16;

/// A response: status line text (`"200 OK"`), content type and body.
pub(crate) struct Response {
    pub status: &'static str,
    pub kind: &'static str,
    pub body: String,
}

impl Response {
    /// A plain-text response.
    pub(crate) fn text(status: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            kind: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// Serves GET and HEAD requests on `listener` with `handle(path)` until the process ends.
pub(crate) async fn serve<F>(listener: TcpListener, handle: F)
where
    F: Fn(&str) -> Response + Send + Sync + 'static,
{
    let handle = Arc::new(handle);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or a connection reset while queued: pause, do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            // Read the request head: bounded in size and in time (bodies are not expected).
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    _ => break,
                }
            }
            let head = String::from_utf8_lossy(&buf);
            let mut parts = head.split_whitespace();
            let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let path = target.split('?').next().unwrap_or("");
            let r = match method {
                "GET" | "HEAD" => handle(path),
                _ => Response::text("405 Method Not Allowed", "only GET and HEAD\n"),
            };
            let mut response = format!(
                "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                r.status,
                r.kind,
                r.body.len()
            )
            .into_bytes();
            if method != "HEAD" {
                response.extend_from_slice(r.body.as_bytes());
            }
            let _ = stream.write_all(&response).await;
            let _ = stream.shutdown().await;
        });
    }
}
