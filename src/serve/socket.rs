//! A client's TCP connection as pingora-core sees it: a `Stream` whose writes
//! are buffered, so a response's header and a small body leave in one send, and
//! which carries the client's address for the session.

use std::net::SocketAddr;
use std::os::unix::io::AsRawFd;
use std::pin::Pin;
use std::task::{Context, Poll};

use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora::protocols::{GetSocketDigest, SocketDigest, Stream};
use tokio::io::{AsyncRead, AsyncWrite, BufWriter, ReadBuf};
use tokio::net::TcpStream;

/// Bytes of response collected before they are sent (or until pingora flushes
/// at the end of the response): a typical response's header and body.
const WRITE_BUFFER: usize = 4096;

/// A TCP connection with a write buffer; reads go straight to the socket (the
/// HTTP session reads into buffers of its own).
#[derive(Debug)]
struct Buffered(BufWriter<TcpStream>);

impl AsyncRead for Buffered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Buffered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl VirtualSocket for Buffered {
    fn set_socket_option(&self, opt: VirtualSockOpt) -> std::io::Result<()> {
        match opt {
            VirtualSockOpt::NoDelay => self.0.get_ref().set_nodelay(true),
            _ => Ok(()),
        }
    }
}

/// Wraps an accepted connection from `client` for pingora's HTTP session.
pub(super) fn client_stream(tcp: TcpStream, client: SocketAddr) -> Stream {
    let digest = SocketDigest::from_raw_fd(tcp.as_raw_fd());
    let _ = digest.peer_addr.set(Some(client.into()));
    let socket = Buffered(BufWriter::with_capacity(WRITE_BUFFER, tcp));
    let mut stream = L4Stream::from(VirtualSocketStream::new(Box::new(socket)));
    stream.set_socket_digest(digest);
    Box::new(stream)
}
