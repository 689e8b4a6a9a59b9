//! `hookgate demo-app`: a stand-in for the app behind the gateway, for trying
//! it out. It answers 200 to every request and prints each one as it arrives
//! (method, path, the `x-webhook-*` and `webhook-*` headers, body size and its
//! first bytes), escaped so that no byte a client sends can drive the terminal.
//! It speaks HTTP/1.1 with keep-alive through pingora-core's session, keeps at
//! most [`PREVIEW_BYTES`] of a body, and bounds every wait.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::http::ResponseHeader;
use pingora::protocols::http::v1::server::HttpSession;
use pingora::protocols::l4::stream::Stream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout, timeout_at};

/// Where the demo app listens unless told otherwise: where the shipped
/// config's routes forward to.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
/// Bytes of each body kept and printed; the rest is counted, not kept.
pub const PREVIEW_BYTES: usize = 200;
/// A request header must be whole within this.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole body must arrive within this.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// An idle connection is closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Writing an answer must finish within this.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 256;
/// How long to wait after a failed `accept` (out of file descriptors, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(20);
/// What every request gets.
const ANSWER: &[u8] = b"{\"received\":true}\n";

/// One request, as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The method, as sent.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The `x-webhook-*` and `webhook-*` headers, in the order sent.
    pub headers: Vec<(String, Vec<u8>)>,
    /// How many body bytes came.
    pub body_bytes: u64,
    /// The first [`PREVIEW_BYTES`] of the body.
    pub preview: Vec<u8>,
}

impl Seen {
    /// Whether the demo app prints header `name`.
    pub fn shows_header(name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        name.starts_with("x-webhook-") || name.starts_with("webhook-")
    }

    /// The lines printed for the request: every byte outside printable
    /// ASCII is escaped (`\n`, `\x1b`, …), so none reaches the terminal raw.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{} {}  ({} body bytes)\n",
            printable(self.method.as_bytes()),
            printable(self.path.as_bytes()),
            self.body_bytes
        );
        for (name, value) in &self.headers {
            let _ = writeln!(
                out,
                "  {}: {}",
                printable(name.as_bytes()),
                printable(value)
            );
        }
        if !self.preview.is_empty() {
            let more = self.body_bytes.saturating_sub(self.preview.len() as u64);
            let _ = write!(out, "  body: {}", printable(&self.preview));
            if more > 0 {
                let _ = write!(out, "… ({more} more bytes)");
            }
            out.push('\n');
        }
        out
    }
}

/// `bytes` as text a terminal shows as is: printable ASCII stays (quotes
/// too, for readable JSON), a backslash and every other byte are escaped
/// (`\\`, `\n`, `\x1b`, …).
fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b == b'"' || b == b'\'' {
            out.push(char::from(b));
        } else {
            out.extend(std::ascii::escape_default(b).map(char::from));
        }
    }
    out
}

/// Serves on `listen` until the process is stopped.
pub fn run(listen: SocketAddr) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(serve(listen))
}

async fn serve(listen: SocketAddr) -> Result<(), String> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr().map_or(listen, |a| a);
    eprintln!("demo app listening on http://{bound}: answers 200 to every request and prints it");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return Ok(());
        };
        match listener.accept().await {
            Ok((tcp, _peer)) => {
                tokio::spawn(async move {
                    connection(tcp).await;
                    drop(permit);
                });
            }
            Err(e) => {
                eprintln!("demo app: accept failed: {e}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Serves the requests of one connection while keep-alive allows.
async fn connection(tcp: TcpStream) {
    let mut session = HttpSession::new(Box::new(Stream::from(tcp)));
    let mut first = true;
    loop {
        let wait = if first { HEADER_TIMEOUT } else { IDLE_TIMEOUT };
        first = false;
        session.set_pipelining_enabled(true);
        session.set_write_timeout(Some(WRITE_TIMEOUT));
        match timeout(wait, session.read_request()).await {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None) | Err(_)) | Err(_) => return,
        }
        if exchange(&mut session).await.is_err() {
            return;
        }
        match session.reuse().await {
            Ok(Some(reusable)) => {
                let (stream, prefix) = reusable.into_parts();
                session = HttpSession::new(stream);
                if let Some(prefix) = prefix {
                    session.set_pipelined_prefix(prefix);
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// Reads one request's body, prints the request and answers it.
async fn exchange(session: &mut HttpSession) -> Result<(), ()> {
    let req = session.req_header();
    let mut seen = Seen {
        method: req.method.as_str().to_owned(),
        path: req.uri.path().to_owned(),
        headers: req
            .headers
            .iter()
            .filter(|(name, _)| Seen::shows_header(name.as_str()))
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
        body_bytes: 0,
        preview: Vec::new(),
    };
    let continues = req
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if continues {
        // Answering 100 must cost the connection neither its keep-alive nor its body.
        session.set_close_on_response_before_downstream_finish(false);
        let written = session.write_continue_response().await;
        session.set_close_on_response_before_downstream_finish(true);
        written.map_err(drop)?;
    }
    let deadline = Instant::now() + BODY_TIMEOUT;
    loop {
        match timeout_at(deadline, session.read_body_bytes()).await {
            Ok(Ok(Some(chunk))) => {
                seen.body_bytes += chunk.len() as u64;
                let room = PREVIEW_BYTES - seen.preview.len();
                seen.preview
                    .extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(Ok(None)) => break,
            Ok(Err(_)) | Err(_) => return Err(()),
        }
    }
    // One write per request, so requests on other connections do not
    // interleave with its lines.
    let _ = std::io::stdout().lock().write_all(seen.render().as_bytes());
    answer(session).await.map_err(drop)
}

async fn answer(session: &mut HttpSession) -> pingora::Result<()> {
    let mut header = ResponseHeader::build(200, Some(2))?;
    header.insert_header(http::header::CONTENT_TYPE, "application/json")?;
    header.insert_header(http::header::CONTENT_LENGTH, ANSWER.len())?;
    session.write_response_header(Box::new(header)).await?;
    session.write_body(ANSWER).await?;
    session.finish_body().await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(body: &[u8], body_bytes: u64) -> Seen {
        Seen {
            method: "POST".to_owned(),
            path: "/internal/rye".to_owned(),
            headers: vec![("x-webhook-route".to_owned(), b"rye".to_vec())],
            body_bytes,
            preview: body.to_vec(),
        }
    }

    #[test]
    fn renders_method_path_headers_and_body() {
        assert_eq!(
            seen(b"{\"a\":1}", 7).render(),
            "POST /internal/rye  (7 body bytes)\n  x-webhook-route: rye\n  body: {\"a\":1}\n"
        );
    }

    #[test]
    fn escapes_every_byte_a_terminal_would_act_on() {
        let mut s = seen(b"\x1b[2J\r\n\x07\x9b", 600);
        s.headers
            .push(("webhook-id".to_owned(), b"a\x1b]0;x\x07".to_vec()));
        let out = s.render();
        assert!(
            out.replace('…', "")
                .bytes()
                .all(|b| b == b'\n' || (b' '..=b'~').contains(&b)),
            "{out:?}"
        );
        assert!(
            out.contains("body: \\x1b[2J\\r\\n\\x07\\x9b… (592 more bytes)"),
            "{out}"
        );
        assert!(out.contains("webhook-id: a\\x1b]0;x\\x07"), "{out}");
        assert_eq!(
            printable(br"a\n"),
            r"a\\n",
            "a backslash cannot fake an escape"
        );
    }

    #[test]
    fn shows_only_the_webhook_headers() {
        assert!(Seen::shows_header("X-Webhook-Route"));
        assert!(Seen::shows_header("webhook-signature"));
        assert!(!Seen::shows_header("authorization"));
        assert!(!Seen::shows_header("x-webhooks"));
    }
}
