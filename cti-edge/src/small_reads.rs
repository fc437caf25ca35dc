//! Small reads from TLS. tokio-rustls zero-fills all the free space of each
//! read buffer it is handed (`ReadBuf::initialize_unfilled`), which makes
//! every page of the HTTP/2 read buffers (8 KiB and more per connection)
//! resident although an idle connection has read a few hundred bytes into
//! them. Through this wrapper TLS reads into a small buffer of ours and only
//! the bytes that arrived are copied on.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes one read asks TLS for at most (within one page).
const READ_SIZE: usize = 2048;

pub struct SmallReads<S>(pub S);

impl<S: AsyncRead + Unpin> AsyncRead for SmallReads<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut chunk = [0u8; READ_SIZE];
        let limit = buf.remaining().min(READ_SIZE);
        let mut small = ReadBuf::new(&mut chunk[..limit]);
        let poll = Pin::new(&mut self.0).poll_read(cx, &mut small);
        if let Poll::Ready(Ok(())) = poll {
            buf.put_slice(small.filled());
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SmallReads<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, data)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn passes_everything_through_in_small_reads() {
        let (mut far, near) = tokio::io::duplex(64 * 1024);
        let data: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        far.write_all(&data).await.unwrap();
        drop(far);
        let mut small = SmallReads(near);
        let mut big = vec![0u8; 16 * 1024];
        let n = small.read(&mut big).await.unwrap();
        assert_eq!(n, READ_SIZE, "one small read at a time");
        let mut rest = Vec::new();
        small.read_to_end(&mut rest).await.unwrap();
        assert_eq!([&big[..n], &rest[..]].concat(), data);
    }
}
