//! A client's TCP connection as pingora-core sees it: a `Stream` whose writes
//! are collected until a flush, so a response's header and a small body leave
//! in one send, and which carries the client's address for the session.

use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Bytes of response collected before they are sent (or until pingora flushes
/// at the end of the response): a typical response's header and body.
const WRITE_BUFFER: usize = 4096;

/// A TCP connection whose writes are collected until a flush. The buffer is
/// allocated when a response starts and released once it is sent, so an idle
/// connection holds none. Reads go straight to the socket (the HTTP session
/// reads into buffers of its own).
#[derive(Debug)]
struct Buffered {
    tcp: TcpStream,
    out: Vec<u8>,
    sent: usize,
}

impl Buffered {
    /// Sends what is buffered, then releases the buffer.
    fn poll_send_buffered(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.out.len() {
            match ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.out[self.sent..])) {
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

impl AsyncRead for Buffered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Buffered {
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
            return Pin::new(&mut this.tcp).poll_write(cx, buf);
        }
        if this.out.capacity() == 0 {
            this.out.reserve_exact(WRITE_BUFFER);
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_send_buffered(cx))?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_send_buffered(cx))?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

impl VirtualSocket for Buffered {
    fn set_socket_option(&self, opt: VirtualSockOpt) -> std::io::Result<()> {
        match opt {
            VirtualSockOpt::NoDelay => self.tcp.set_nodelay(true),
            _ => Ok(()),
        }
    }
}

/// Wraps an accepted connection from `client` for pingora's HTTP session.
pub(super) fn client_stream(tcp: TcpStream, client: SocketAddr) -> Stream {
    let digest = SocketDigest::from_raw_fd(tcp.as_raw_fd());
    let _ = digest.peer_addr.set(Some(client.into()));
    let socket = Buffered {
        tcp,
        out: Vec::new(),
        sent: 0,
    };
    let mut stream = L4Stream::from(VirtualSocketStream::new(Box::new(socket)));
    stream.set_socket_digest(digest);
    Box::new(stream)
}
