//! A client's connection, plain or TLS, as pingora-core sees it: a `Stream`
//! whose writes are collected until a flush (a response's header and a small
//! body leave in one send), whose reads can be capped (a request header may not
//! exceed its budget), and which carries the client's address for the session. The
//! connection loop keeps a [`Client`] handle on the same socket, to wait for a
//! request's first byte without holding a read buffer, and to close gently.

use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::BufMut;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// Bytes of response collected before they are sent (or until pingora flushes
/// at the end of the response): a typical response's header and body.
const WRITE_BUFFER: usize = 4096;
/// No read budget: the body phase, bounded by the route's own limit.
const UNLIMITED: usize = usize::MAX;
/// The error a capped read ends with once the budget is spent.
pub(super) const BUDGET_SPENT: &str = "request header over its size limit";

/// What the connection loop and the socket share.
#[derive(Debug)]
struct Shared {
    tcp: TcpStream,
    /// Bytes the socket may still hand to the HTTP session.
    budget: AtomicUsize,
    /// Whether received bytes wait, already read off the socket, in the
    /// transport (TLS records decrypted ahead): then the socket's readiness
    /// says nothing about them.
    holds_unread: AtomicBool,
}

/// The connection loop's handle on a client socket.
#[derive(Debug, Clone)]
pub(super) struct Client(Arc<Shared>);

impl Client {
    fn shared(tcp: TcpStream) -> Arc<Shared> {
        Arc::new(Shared {
            tcp,
            budget: AtomicUsize::new(UNLIMITED),
            holds_unread: AtomicBool::new(false),
        })
    }

    /// The stream pingora's HTTP session uses, over `transport`.
    fn stream<T: Transport>(shared: &Arc<Shared>, transport: T, client: SocketAddr) -> Stream {
        let digest = SocketDigest::from_raw_fd(shared.tcp.as_raw_fd());
        let _ = digest.peer_addr.set(Some(client.into()));
        let socket = Buffered {
            inner: transport,
            shared: Arc::clone(shared),
            out: Vec::new(),
            sent: 0,
        };
        let mut stream = L4Stream::from(VirtualSocketStream::new(Box::new(socket)));
        stream.set_socket_digest(digest);
        Box::new(stream)
    }

    /// Wraps an accepted plain connection from `client`: the loop's handle, and
    /// the stream for pingora's HTTP session.
    pub(super) fn accept(tcp: TcpStream, client: SocketAddr) -> (Self, Stream) {
        let shared = Self::shared(tcp);
        let stream = Self::stream(&shared, Raw(Arc::clone(&shared)), client);
        (Self(shared), stream)
    }

    /// Like [`Self::accept`], after a TLS handshake with `config`.
    pub(super) async fn accept_tls(
        tcp: TcpStream,
        client: SocketAddr,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<(Self, Stream)> {
        let shared = Self::shared(tcp);
        let tls = tokio_rustls::TlsAcceptor::from(config)
            .accept(Raw(Arc::clone(&shared)))
            .await?;
        shared
            .holds_unread
            .store(tls.holds_unread(), Ordering::Relaxed);
        let stream = Self::stream(&shared, tls, client);
        Ok((Self(shared), stream))
    }

    /// Whether the next request's bytes may already be waiting past the socket
    /// (decrypted TLS data): then no wait for the socket is needed.
    pub(super) fn holds_unread(&self) -> bool {
        self.0.holds_unread.load(Ordering::Relaxed)
    }

    /// Waits until the client has sent something (or closed): checked with a
    /// peek, since a fresh socket may report itself readable before it is.
    pub(super) async fn sent_something(&self) -> std::io::Result<()> {
        self.0.tcp.peek(&mut [0u8; 1]).await.map(drop)
    }

    /// Waits until the socket reports it is readable. Cheaper than
    /// [`Self::sent_something`] (no system call), and exact after a request was
    /// read on it: a read that emptied the socket cleared its readiness.
    pub(super) async fn readable(&self) -> std::io::Result<()> {
        self.0.tcp.readable().await
    }

    /// Whether the session has read nothing since reads were last capped.
    pub(super) fn read_nothing_since_cap(&self, cap: usize) -> bool {
        self.0.budget.load(Ordering::Relaxed) == cap
    }

    /// Lets the session read at most `bytes` more (a request header and what
    /// arrived with it).
    pub(super) fn cap_reads(&self, bytes: usize) {
        self.0.budget.store(bytes, Ordering::Relaxed);
    }

    /// Whether the session stopped reading because the cap was reached.
    pub(super) fn reads_capped_out(&self) -> bool {
        self.0.budget.load(Ordering::Relaxed) == 0
    }

    /// Lifts the cap (the body phase has limits of its own).
    pub(super) fn uncap_reads(&self) {
        self.0.budget.store(UNLIMITED, Ordering::Relaxed);
    }

    /// Closes gently after an answer given before the request was read whole:
    /// the answer is on its way (FIN sent), and what the client still sends is
    /// read and dropped for at most `time` or `bytes`, so the kernel does not
    /// answer it with a reset that could destroy the answer before it is read.
    pub(super) async fn linger(&self, time: Duration, bytes: usize) {
        let tcp = &self.0.tcp;
        let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write);
        let drain = async {
            let mut left = bytes;
            let mut sink = [0u8; 4096];
            while left > 0 {
                if tcp.readable().await.is_err() {
                    return;
                }
                match tcp.try_read(&mut sink) {
                    Ok(0) => return,
                    Ok(n) => left = left.saturating_sub(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(time, drain).await;
    }
}

/// What the HTTP session's bytes travel over: the socket itself, or TLS on it.
trait Transport: AsyncRead + AsyncWrite + Unpin + Send + Sync + std::fmt::Debug + 'static {
    /// Reads at most `limit` bytes (no more than `buf` holds) into `buf`.
    fn poll_read_at_most(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        limit: usize,
    ) -> Poll<std::io::Result<()>>;

    /// Whether bytes read off the socket wait here to be read.
    fn holds_unread(&self) -> bool;
}

/// The socket as a stream of bytes, shared with the connection loop's handle.
#[derive(Debug)]
struct Raw(Arc<Shared>);

impl Transport for Raw {
    fn poll_read_at_most(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        limit: usize,
    ) -> Poll<std::io::Result<()>> {
        let tcp = &self.0.tcp;
        let want = limit.min(buf.remaining());
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            let mut got = 0;
            let read = tcp.try_io(Interest::READABLE, || {
                got = if want < buf.remaining() {
                    tcp.try_read_buf(&mut BufMut::limit(&mut *buf, want))?
                } else {
                    tcp.try_read_buf(&mut *buf)?
                };
                // A short read emptied the socket: let the runtime forget its
                // readiness (as tokio's own reads do), so that waiting for the
                // next request waits for bytes that really arrive.
                if got > 0 && got < want {
                    Err(std::io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(got)
                }
            });
            match read {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && got == 0 => {}
                Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                    return Poll::Ready(Err(e));
                }
                _ => return Poll::Ready(Ok(())),
            }
        }
    }

    fn holds_unread(&self) -> bool {
        false
    }
}

impl AsyncRead for Raw {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.poll_read_at_most(cx, buf, usize::MAX)
    }
}

impl AsyncWrite for Raw {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let tcp = &self.0.tcp;
        loop {
            ready!(tcp.poll_write_ready(cx))?;
            match tcp.try_write(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(socket2::SockRef::from(&self.0.tcp).shutdown(std::net::Shutdown::Write))
    }
}

impl Transport for tokio_rustls::server::TlsStream<Raw> {
    fn poll_read_at_most(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        limit: usize,
    ) -> Poll<std::io::Result<()>> {
        if limit >= buf.remaining() {
            return Pin::new(self).poll_read(cx, buf);
        }
        let mut capped = ReadBuf::new(buf.initialize_unfilled_to(limit));
        ready!(Pin::new(self).poll_read(cx, &mut capped))?;
        let n = capped.filled().len();
        buf.advance(n);
        Poll::Ready(Ok(()))
    }

    fn holds_unread(&self) -> bool {
        // rustls wants no read while decrypted data (or the end) waits.
        !self.get_ref().1.wants_read()
    }
}

/// The session's side of the socket: writes are collected until a flush (the
/// buffer is allocated when a response starts and released once it is sent,
/// so an idle connection holds none); reads go to the transport, within the
/// read budget.
#[derive(Debug)]
struct Buffered<T> {
    inner: T,
    shared: Arc<Shared>,
    out: Vec<u8>,
    sent: usize,
}

impl<T: Transport> Buffered<T> {
    /// Sends what is buffered, then releases the buffer.
    fn poll_send_buffered(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.out.len() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out[self.sent..])) {
                Ok(0) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => self.sent += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.out = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: Transport> AsyncRead for Buffered<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let budget = this.shared.budget.load(Ordering::Relaxed);
        if budget == 0 {
            return Poll::Ready(Err(std::io::Error::other(BUDGET_SPENT)));
        }
        let before = buf.filled().len();
        ready!(this.inner.poll_read_at_most(cx, buf, budget))?;
        if budget != UNLIMITED {
            let got = buf.filled().len() - before;
            this.shared.budget.fetch_sub(got, Ordering::Relaxed);
        }
        let unread = this.inner.holds_unread();
        if unread != this.shared.holds_unread.load(Ordering::Relaxed) {
            this.shared.holds_unread.store(unread, Ordering::Relaxed);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: Transport> AsyncWrite for Buffered<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        if this.out.len() + buf.len() > WRITE_BUFFER {
            ready!(this.poll_send_buffered(cx))?;
        }
        if buf.len() >= WRITE_BUFFER {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        if this.out.capacity() == 0 {
            this.out.reserve_exact(WRITE_BUFFER);
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_send_buffered(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_send_buffered(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: Transport> VirtualSocket for Buffered<T> {
    fn set_socket_option(&self, opt: VirtualSockOpt) -> std::io::Result<()> {
        match opt {
            VirtualSockOpt::NoDelay => self.shared.tcp.set_nodelay(true),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_quiet_client_has_sent_nothing_until_it_sends() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, addr) = listener.accept().await.unwrap();
        let (client, _stream) = Client::accept(tcp, addr);
        let quiet = tokio::time::timeout(Duration::from_millis(200), client.sent_something()).await;
        assert!(quiet.is_err(), "{quiet:?}");
        peer.write_all(b"G").await.unwrap();
        let sent = tokio::time::timeout(Duration::from_secs(2), client.sent_something()).await;
        assert!(matches!(sent, Ok(Ok(()))), "{sent:?}");
    }
}
