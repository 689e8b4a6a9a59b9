//! A raw-socket upstream on loopback. It records every byte of every
//! connection exactly as it arrived, and answers each request (read whole by
//! its `Content-Length`) with a scripted [`Act`]: a valid response, garbage, a
//! reset, a stall, a close. Tests then parse the recording themselves
//! ([`Forwarded`]) to see precisely what the gateway sent.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A complete, valid response: 200 with the body `ok`.
pub const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// What the upstream does once a request has arrived whole.
#[derive(Debug, Clone)]
pub enum Act {
    /// Writes these bytes, then waits for the next request.
    Reply(Vec<u8>),
    /// Writes these bytes, then closes the connection.
    Close(Vec<u8>),
    /// Writes these bytes, then resets the connection.
    Reset(Vec<u8>),
    /// Writes these bytes, then sends nothing more, holding the connection open.
    Stall(Vec<u8>),
}

/// One accepted connection: what arrived on it, and how many requests were
/// read whole from it.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// Every byte received, in order.
    pub bytes: Vec<u8>,
    /// Requests read whole (and answered by their act).
    pub requests: usize,
}

#[derive(Debug)]
struct State {
    /// The n-th request on a connection gets the n-th act; the last one repeats.
    script: Vec<Act>,
    connections: Mutex<Vec<Connection>>,
    open: AtomicUsize,
}

/// A running raw upstream; it stops when the test's runtime ends.
#[derive(Debug, Clone)]
pub struct RawUpstream {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl RawUpstream {
    /// Starts an upstream answering every request with a 200 and keeping the
    /// connection.
    pub async fn ok() -> Self {
        Self::start(vec![Act::Reply(OK.to_vec())]).await
    }

    /// Starts an upstream that acts on the n-th request of each connection as
    /// `script[n]` says (the last act repeats).
    pub async fn start(script: Vec<Act>) -> Self {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            script,
            connections: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
        });
        let accept_state = Arc::clone(&state);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let index = {
                    let mut all = accept_state.connections.lock().unwrap();
                    all.push(Connection::default());
                    all.len() - 1
                };
                accept_state.open.fetch_add(1, Ordering::SeqCst);
                let state = Arc::clone(&accept_state);
                tokio::spawn(async move {
                    serve(&state, index, stream).await;
                    state.open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self { addr, state }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.lock().unwrap().len()
    }

    /// Every connection so far, as recorded up to now.
    pub fn recorded(&self) -> Vec<Connection> {
        self.state.connections.lock().unwrap().clone()
    }

    /// Waits until every connection has ended (the gateway closed it, or the
    /// script did), so that nothing more can arrive, and returns them all.
    pub async fn ended(&self) -> Vec<Connection> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.state.open.load(Ordering::SeqCst) != 0 {
            assert!(Instant::now() < deadline, "upstream connections still open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.recorded()
    }
}

/// Records what arrives on `stream` and plays the script on each whole
/// request, until the peer closes or an act ends the connection.
async fn serve(state: &State, index: usize, mut stream: TcpStream) {
    let mut pending = Vec::new();
    let mut served = 0;
    let mut stalled = false;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        state.connections.lock().unwrap()[index]
            .bytes
            .extend_from_slice(&chunk[..n]);
        if stalled {
            continue;
        }
        pending.extend_from_slice(&chunk[..n]);
        while let Some(len) = request_len(&pending) {
            pending.drain(..len);
            state.connections.lock().unwrap()[index].requests += 1;
            let act = &state.script[served.min(state.script.len() - 1)];
            served += 1;
            match act {
                Act::Reply(bytes) => {
                    if stream.write_all(bytes).await.is_err() {
                        return;
                    }
                }
                Act::Close(bytes) => {
                    let _ = stream.write_all(bytes).await;
                    return;
                }
                Act::Reset(bytes) => {
                    let _ = stream.write_all(bytes).await;
                    let _ = stream.set_zero_linger();
                    return;
                }
                Act::Stall(bytes) => {
                    let _ = stream.write_all(bytes).await;
                    stalled = true;
                    break;
                }
            }
        }
    }
}

/// The length of the request at the start of `buf` (head and
/// `Content-Length` body), once all of it is there.
fn request_len(buf: &[u8]) -> Option<usize> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(head) = req.parse(buf).ok()? else {
        return None;
    };
    let body = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .map_or(Some(0), |h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        })?;
    (buf.len() >= head + body).then_some(head + body)
}

/// A request as it arrived at the upstream, parsed from the recorded bytes.
#[derive(Debug, Clone)]
pub struct Forwarded {
    pub method: String,
    pub target: String,
    /// Header names (as sent) and values, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Everything after the head: the body, and anything that followed it.
    pub rest: Vec<u8>,
}

impl Forwarded {
    /// Parses the request at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut req = httparse::Request::new(&mut headers);
        let status = req.parse(bytes).unwrap_or_else(|e| {
            panic!(
                "the upstream got something that is not a request ({e}): {:?}",
                String::from_utf8_lossy(bytes)
            )
        });
        let httparse::Status::Complete(head) = status else {
            panic!(
                "the upstream got half a request head: {:?}",
                String::from_utf8_lossy(bytes)
            );
        };
        Self {
            method: req.method.unwrap().to_owned(),
            target: req.path.unwrap().to_owned(),
            headers: req
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
            rest: bytes[head..].to_vec(),
        }
    }

    /// Every value of header `name` (case-insensitive), as text.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The single value of header `name`; panics when absent or repeated.
    pub fn header(&self, name: &str) -> String {
        let all = self.header_all(name);
        assert_eq!(all.len(), 1, "header {name}: {all:?} in {:?}", self.headers);
        all.into_iter().next().unwrap()
    }

    /// Asserts the framing is the gateway's, around exactly `body`: one
    /// `Content-Length` equal to its length, no `Transfer-Encoding` nor any
    /// other hop-by-hop header (however spelled: `Transfer_Encoding` is one to
    /// some servers), and not a byte after the body.
    pub fn assert_framed_around(&self, body: &[u8]) {
        let spelled = |name: &str| name.to_ascii_lowercase().replace('_', "-");
        let lengths: Vec<&(String, Vec<u8>)> = self
            .headers
            .iter()
            .filter(|(k, _)| spelled(k) == "content-length")
            .collect();
        assert_eq!(lengths.len(), 1, "{:?}", self.headers);
        assert_eq!(lengths[0].1, body.len().to_string().into_bytes());
        for (name, _) in &self.headers {
            assert!(
                ![
                    "transfer-encoding",
                    "connection",
                    "keep-alive",
                    "upgrade",
                    "te",
                    "trailer",
                    "expect",
                    "proxy-connection",
                    "http2-settings",
                ]
                .contains(&spelled(name).as_str()),
                "{name} went upstream"
            );
        }
        assert!(
            self.rest == body,
            "the upstream got {:?} after the head, not the verified body {:?}",
            String::from_utf8_lossy(&self.rest),
            String::from_utf8_lossy(body)
        );
    }

    /// Asserts the gateway's own headers are there once each with its values
    /// (`route` is the route's name, `scheme` the verifying scheme), and that
    /// no other `x-webhook-*` header went upstream, however it is spelled
    /// (`X-WEBHOOK-…`, `x_webhook_…`).
    pub fn assert_gateway_headers(&self, route: &str, scheme: &str) {
        assert_eq!(self.header("x-webhook-verified"), scheme);
        assert_eq!(self.header("x-webhook-route"), route);
        let ours = [
            "x-webhook-verified",
            "x-webhook-route",
            "x-webhook-event-type",
        ];
        let namespace: Vec<&str> = self
            .headers
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| {
                name.to_ascii_lowercase()
                    .replace('_', "-")
                    .starts_with("x-webhook-")
            })
            .collect();
        for name in &namespace {
            assert!(
                ours.contains(name) && namespace.iter().filter(|n| *n == name).count() == 1,
                "{name} went upstream: {:?}",
                self.headers
            );
        }
    }
}
