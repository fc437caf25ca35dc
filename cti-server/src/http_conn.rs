//! HTTP on one connection: HTTP/2 or HTTP/1.1 (by ALPN, else by the HTTP/2
//! preface), with every limit: the request-header timeout (hyper's), the
//! idle timeout (HTTP/2: GOAWAY), the maximum age (graceful), the write
//! timeout.
//!
//! Memory: an idle HTTP/1.1 connection is parked (`PARK_AFTER`). hyper's
//! connection, with its read and write buffers (8 KiB and more each), is
//! taken down between requests without a word on the wire, and a new one
//! made when the first byte of the next request arrives, so an idle
//! keep-alive connection holds only its socket (and TLS state).

use crate::activity::{Activity, Tracked};
use crate::conn::{Connections, Drain, DrainState, Ending};
use crate::local_streams::{Driver, Streams};
use crate::rewind::Rewind;
use crate::write_timeout::WriteTimeout;
use crate::Body;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// The HTTP version a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

impl Protocol {
    /// What ALPN settled, if it did.
    pub fn from_alpn(alpn: Option<&[u8]>) -> Option<Protocol> {
        match alpn? {
            b"h2" => Some(Protocol::Http2),
            b"http/1.1" => Some(Protocol::Http1),
            _ => None,
        }
    }
}

/// An HTTP/1.1 connection with nothing in flight this long is parked: long
/// enough that a client sending request after request (a benchmark, a
/// claim script) keeps its hyper connection, short enough that a burst of
/// new connections does not pile up hyper buffers.
const PARK_AFTER: Duration = Duration::from_millis(100);

/// How an HTTP/2 connection (h2c, or over TLS without ALPN) begins.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

type Io<I> = Rewind<WriteTimeout<I>>;

/// What a connection is served over (TCP, TLS, with a PROXY header's tail).
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// The service a connection runs: the game's, possibly wrapped.
pub trait AppService:
    hyper::service::Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Send
    + 'static
{
}

impl<S> AppService for S where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Send
        + 'static
{
}

/// What a connection's supervision needs besides the connection.
struct Life {
    activity: Activity,
    drain: Drain,
    /// When the connection reaches its maximum age.
    old_at: Instant,
}

impl Connections {
    /// Serves HTTP on `io` until the client is done, it idles, it reaches
    /// its maximum age or the server drains. `protocol` is what ALPN
    /// settled; without it the first bytes decide.
    pub async fn serve_http<I, S>(
        &self,
        io: I,
        protocol: Option<Protocol>,
        service: S,
        drain: Drain,
    ) where
        I: Stream,
        S: AppService + Unpin,
    {
        let activity = Activity::new();
        let io = WriteTimeout::new(io, self.settings.write_timeout, activity.clone());
        let mut io = Rewind::new(Bytes::new(), io);
        let old_at = Instant::now() + self.settings.max_age;
        let protocol = match protocol {
            Some(p) => p,
            None => match tokio::time::timeout(self.settings.request_timeout, sniff(&mut io)).await
            {
                Ok(Ok(p)) => p,
                _ => return,
            },
        };
        let service = CloseWhenDraining {
            inner: service,
            drain: drain.clone(),
        };
        let life = Life {
            activity: activity.clone(),
            drain,
            old_at,
        };
        let service = activity.track(service);
        // Each boxed, so that a connection carries only its own protocol's state.
        match protocol {
            Protocol::Http2 => Box::pin(self.serve_h2(io, service, life)).await,
            Protocol::Http1 => Box::pin(self.serve_h1(io, service, life)).await,
        }
    }

    async fn serve_h2<I, S>(
        &self,
        io: Io<I>,
        service: Tracked<CloseWhenDraining<S>>,
        mut life: Life,
    ) where
        I: Stream,
        S: AppService,
    {
        let streams = Streams::default();
        let conn = self
            .h2(streams.clone())
            .serve_connection(TokioIo::new(io), service);
        let mut conn = H2(Box::pin(conn), Driver::new(streams));
        if let Some((Err(e), _)) = self.supervise(&mut conn, &mut life, false).await {
            self.ended(&e);
        }
    }

    async fn serve_h1<I, S>(
        &self,
        mut io: Io<I>,
        service: Tracked<CloseWhenDraining<S>>,
        mut life: Life,
    ) where
        I: Stream,
        S: AppService + Unpin,
    {
        let mut service = service;
        loop {
            if !io.has_prefix() {
                if let Err(why) = self.park(&mut io, &mut life).await {
                    if let Some(why) = why {
                        self.count(why);
                    }
                    let _ = io.shutdown().await;
                    return;
                }
            }
            let conn = self.h1.serve_connection(TokioIo::new(io), service);
            let mut conn = H1(Box::pin(conn));
            let Some((done, ending)) = self.supervise(&mut conn, &mut life, true).await else {
                return; // cut
            };
            if let Err(e) = done {
                self.ended(&e);
                return;
            }
            let parts = Pin::into_inner(conn.0).into_parts();
            (io, service) = (parts.io.into_inner(), parts.service);
            if ending != Some(Ending::Park) {
                // hyper ended the connection itself (`Connection: close`,
                // HTTP/1.0, a shutdown or age): finish it.
                let _ = io.shutdown().await;
                return;
            }
            // What hyper read and did not use comes before what it did not
            // read yet.
            io.unread(parts.read_buf);
        }
    }

    /// Waits for the next request's first byte holding nothing of hyper's;
    /// `Err` when the connection is to end (with the reason the server
    /// ends it, or `None` when the client closed).
    async fn park<I>(&self, io: &mut Io<I>, life: &mut Life) -> Result<(), Option<Ending>>
    where
        I: AsyncRead + AsyncWrite + Unpin,
    {
        let _parked = self.parked();
        let idle_at = life.activity.idle_since() + self.settings.idle_timeout;
        let mut byte = [0u8; 1];
        tokio::select! {
            read = io.read(&mut byte) => match read {
                Ok(1) => {
                    io.unread(Bytes::copy_from_slice(&byte));
                    Ok(())
                }
                _ => Err(None),
            },
            () = tokio::time::sleep_until(idle_at) => Err(Some(Ending::Idle)),
            () = tokio::time::sleep_until(life.old_at) => Err(Some(Ending::Age)),
            () = linger_after_drain(&mut life.drain) => Err(Some(Ending::Shutdown)),
        }
    }

    /// Drives `conn` to its end, closing it gracefully on shutdown, at its
    /// maximum age, when idle (HTTP/2), or to park it (HTTP/1.1, `park`).
    /// What is still open after a graceful close for age or idleness (an
    /// event stream, say) gets the request timeout, then is cut (`None`).
    /// Otherwise: how the connection ended, and what the server asked of it.
    async fn supervise<C: Graceful>(
        &self,
        conn: &mut C,
        life: &mut Life,
        park: bool,
    ) -> Option<(hyper::Result<()>, Option<Ending>)> {
        let deadline = tokio::time::sleep_until(life.old_at);
        tokio::pin!(deadline);
        // Parking waits for a request served on this hyper connection (a
        // new one is not idle: hyper would answer its first request with
        // `Connection: close`) that leaves the connection reusable.
        let served = life.activity.requests() + 1;
        let quiet = || async {
            if park {
                life.activity.reusable_after(served, PARK_AFTER).await
            } else {
                life.activity.idle_for(self.settings.idle_timeout).await
            }
        };
        let mut ending = None;
        loop {
            let why = tokio::select! {
                biased;
                done = std::future::poll_fn(|cx| conn.poll_done(cx)) => return Some((done, ending)),
                () = &mut deadline => match ending {
                    None => Ending::Age,
                    Some(_) => {
                        tracing::debug!(?ending, "cutting a connection that did not finish in time");
                        return None;
                    }
                },
                // A hand-over leaves HTTP/1.1 to `CloseWhenDraining` (or
                // to parking): closing it between requests would race the
                // client's next one.
                () = async { if park { life.drain.stopping().await } else { life.drain.started().await } },
                    if ending.is_none() => Ending::Shutdown,
                () = quiet(), if ending.is_none() => {
                    if park { Ending::Park } else { Ending::Idle }
                }
            };
            conn.graceful();
            if why != Ending::Park {
                self.count(why);
            }
            // On shutdown the process-wide grace period applies instead.
            let finish = match why {
                Ending::Shutdown => Duration::from_secs(365 * 86_400),
                _ => self.settings.request_timeout,
            };
            deadline.as_mut().reset(Instant::now() + finish);
            ending = Some(why);
        }
    }
}

/// How long a parked HTTP/1.1 connection may still bring a request once the
/// server drains (stops or hands over). The client cannot know: a connection
/// accepted a moment ago is about to send its first request, a busy one its
/// next. Closing at once fails that request; within the linger it is served
/// with `Connection: close` (`CloseWhenDraining`), after it the connection
/// is closed as idle.
const DRAIN_LINGER: Duration = Duration::from_secs(1);

async fn linger_after_drain(drain: &mut Drain) {
    drain.started().await;
    tokio::time::sleep(DRAIN_LINGER).await;
}

/// Reads until the bytes either are the HTTP/2 preface or cannot be; the
/// bytes read are replayed to the server.
async fn sniff<I: AsyncRead + AsyncWrite + Unpin>(io: &mut Io<I>) -> std::io::Result<Protocol> {
    let mut seen = [0u8; PREFACE.len()];
    let mut n = 0;
    while n < PREFACE.len() && seen[..n] == PREFACE[..n] {
        match io.read(&mut seen[n..]).await? {
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            got => n += got,
        }
    }
    io.unread(Bytes::copy_from_slice(&seen[..n]));
    Ok(if seen[..n] == *PREFACE {
        Protocol::Http2
    } else {
        Protocol::Http1
    })
}

/// A connection that can be asked to finish gracefully.
trait Graceful {
    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<hyper::Result<()>>;
    fn graceful(&mut self);
}

type H1Conn<I, S> =
    hyper::server::conn::http1::Connection<TokioIo<Io<I>>, Tracked<CloseWhenDraining<S>>>;

struct H1<I, S>(Pin<Box<H1Conn<I, S>>>)
where
    Tracked<CloseWhenDraining<S>>: hyper::service::HttpService<Incoming>;

impl<I, S> Graceful for H1<I, S>
where
    I: Stream,
    S: AppService + Unpin,
{
    /// Without shutting the socket: a parked connection goes on.
    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        self.0.poll_without_shutdown(cx)
    }
    fn graceful(&mut self) {
        self.0.as_mut().graceful_shutdown();
    }
}

type H2Conn<I, S> =
    hyper::server::conn::http2::Connection<TokioIo<Io<I>>, Tracked<CloseWhenDraining<S>>, Streams>;

/// The connection, and its streams (run in the connection's task).
struct H2<I, S>(Pin<Box<H2Conn<I, S>>>, Driver)
where
    Tracked<CloseWhenDraining<S>>: hyper::service::HttpService<Incoming>;

impl<I, S> Graceful for H2<I, S>
where
    I: Stream,
    S: AppService,
{
    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        let conn = &mut self.0;
        self.1.poll(cx, |cx| conn.as_mut().poll(cx))
    }
    fn graceful(&mut self) {
        self.0.as_mut().graceful_shutdown();
    }
}

/// Answers HTTP/1.x with `Connection: close` once the server drains (a
/// hand-over or a shutdown): the client then sends its next request on a
/// new connection, instead of racing the server's close of this one (a
/// request written into a closing connection is lost).
pub struct CloseWhenDraining<S> {
    inner: S,
    drain: Drain,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl<S: AppService> hyper::service::Service<Request<Incoming>> for CloseWhenDraining<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: Request<Incoming>) -> Answer {
        let h1 = req.version() < hyper::Version::HTTP_2;
        let answer = self.inner.call(req);
        if !h1 {
            return Box::pin(answer);
        }
        let drain = self.drain.clone();
        Box::pin(async move {
            let mut response = answer.await?;
            if drain.state() != DrainState::Serving {
                response.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            Ok(response)
        })
    }
}
