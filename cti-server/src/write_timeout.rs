//! A write timeout: a client that stops reading makes writes wait once its
//! receive window and our send buffer are full. A write (or flush) that
//! makes no progress for the limit fails with `TimedOut`, which ends the
//! connection and frees what it held. Any progress restarts the clock.
//! A write that waits also counts as activity: a connection is not idle
//! (not parked, not closed for idleness) while the client owes us a read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::activity::{Activity, InFlight};

pub struct WriteTimeout<S> {
    inner: S,
    limit: Duration,
    activity: Activity,
    /// Running while a write waits; boxed so that a connection that is not
    /// blocked does not carry a timer.
    stalled: Option<(Pin<Box<Sleep>>, InFlight)>,
}

impl<S> WriteTimeout<S> {
    pub fn new(inner: S, limit: Duration, activity: Activity) -> WriteTimeout<S> {
        WriteTimeout {
            inner,
            limit,
            activity,
            stalled: None,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Passes a finished write on; starts or checks the clock on a waiting one.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let (limit, activity) = (self.limit, &self.activity);
        let (timer, _) = self
            .stalled
            .get_or_insert_with(|| (Box::pin(tokio::time::sleep(limit)), activity.begin()));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read nothing within the write timeout",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, data);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stops_fails_the_write_after_the_limit() {
        let (near, mut far) = tokio::io::duplex(1024);
        let activity = Activity::new();
        let mut w = WriteTimeout::new(near, Duration::from_secs(30), activity.clone());
        w.write_all(&[0; 1024]).await.unwrap();
        assert_eq!(activity.in_flight(), 0);
        let started = tokio::time::Instant::now();
        let waiting = tokio::time::timeout(Duration::from_secs(10), w.write_all(&[0; 10])).await;
        assert!(waiting.is_err());
        assert_eq!(activity.in_flight(), 1, "a waiting write keeps it busy");
        let err = w.write_all(&[0; 10]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(activity.in_flight(), 0);
        // A reader that keeps reading, however slowly, is never cut.
        let mut w = WriteTimeout::new(w.inner, Duration::from_secs(30), activity.clone());
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 100];
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                tokio::io::AsyncReadExt::read(&mut far, &mut buf)
                    .await
                    .unwrap();
            }
        });
        w.write_all(&[0; 1024]).await.unwrap();
        reader.await.unwrap();
        drop(w);
        assert_eq!(activity.in_flight(), 0);
    }
}
