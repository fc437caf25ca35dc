//! Whether a connection is in use: requests in flight, counted from the
//! service call until the response body is dropped (sent, or abandoned with
//! its stream or connection). A connection with nothing in flight for the
//! idle timeout is closed, HTTP/2 ones with GOAWAY, although they answer
//! pings.
//!
//! Nothing is woken when a request begins or ends: the state is looked at
//! when a timer fires (so idleness is seen up to one period late). Waking
//! the connection's task twice per request cost a third of the keep-alive
//! throughput.

use crate::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// Requests in flight on one connection, and since when it has had none.
#[derive(Clone)]
pub struct Activity(Arc<Shared>);

struct Shared {
    state: Mutex<State>,
}

#[derive(Clone, Copy)]
struct State {
    in_flight: usize,
    idle_since: Instant,
    /// Requests begun so far.
    requests: u64,
    /// Whether the last request leaves its HTTP/1.1 connection reusable
    /// as the client sees it (see `reusable`).
    reusable: bool,
}

impl Activity {
    pub fn new() -> Activity {
        Activity(Arc::new(Shared {
            state: Mutex::new(State {
                in_flight: 0,
                idle_since: Instant::now(),
                requests: 0,
                reusable: false,
            }),
        }))
    }

    pub(crate) fn begin(&self) -> InFlight {
        self.0.update(|s| s.in_flight += 1);
        InFlight(self.0.clone())
    }

    fn request(&self, reusable: bool) -> InFlight {
        self.0.update(|s| {
            s.in_flight += 1;
            s.requests += 1;
            s.reusable = reusable;
        });
        InFlight(self.0.clone())
    }

    /// Requests begun so far.
    pub fn requests(&self) -> u64 {
        self.0.state().requests
    }

    /// Requests (and waiting writes) in flight.
    pub fn in_flight(&self) -> usize {
        self.0.state().in_flight
    }

    /// When the connection last went idle.
    pub fn idle_since(&self) -> Instant {
        self.0.state().idle_since
    }

    /// Resolves once nothing has been in flight for `limit`.
    pub async fn idle_for(&self, limit: Duration) {
        self.wait(limit, 0, false).await
    }

    /// Resolves once `requests` requests have begun, the last of them left
    /// the connection reusable, and nothing has been in flight for `limit`.
    pub async fn reusable_after(&self, requests: u64, limit: Duration) {
        self.wait(limit, requests, true).await
    }

    async fn wait(&self, limit: Duration, requests: u64, reusable: bool) {
        // While busy, look again a period later.
        let period = limit.max(Duration::from_millis(10));
        loop {
            let s = self.0.state();
            let ready = s.in_flight == 0 && s.requests >= requests && (!reusable || s.reusable);
            let now = Instant::now();
            let at = if ready {
                s.idle_since + limit
            } else {
                now + period
            };
            if ready && at <= now {
                return;
            }
            tokio::time::sleep_until(at).await;
        }
    }

    /// `service`, counting its requests here.
    pub fn track<S>(&self, service: S) -> Tracked<S> {
        Tracked {
            inner: service,
            activity: self.clone(),
        }
    }
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut State)) {
        change(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }

    fn state(&self) -> State {
        *self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for Activity {
    fn default() -> Activity {
        Activity::new()
    }
}

/// One request in flight; its end makes the connection idle if it was the last.
pub(crate) struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.update(|s| {
            s.in_flight -= 1;
            if s.in_flight == 0 {
                s.idle_since = Instant::now();
            }
        });
    }
}

/// A service whose requests count as activity.
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Activity,
}

type Answer = Pin<Box<dyn Future<Output = Result<Response<TrackedBody>, Infallible>> + Send>>;

impl<S> hyper::service::Service<Request<Incoming>> for Tracked<S>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: Request<Incoming>) -> Answer {
        let in_flight = self.activity.request(reusable(&req));
        let answer = self.inner.call(req);
        Box::pin(async move {
            let response = answer.await?;
            Ok(response.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            }))
        })
    }
}

/// Whether, after answering `req`, its HTTP/1.1 connection is kept for the
/// next request with nothing left to read: HTTP/1.1 without
/// `Connection: close` and without a body. (hyper itself closes the others,
/// or still has a body to drain.)
fn reusable(req: &Request<Incoming>) -> bool {
    use hyper::body::Body as _;
    let h = req.headers();
    req.version() == hyper::Version::HTTP_11
        && req.body().is_end_stream()
        && !h.contains_key(hyper::header::TRANSFER_ENCODING)
        && !h
            .get_all(hyper::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("close"))
}

/// A response body that keeps its request in flight until dropped.
pub struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_only_with_nothing_in_flight() {
        let activity = Activity::new();
        let quiet = activity.reusable_after(1, Duration::ZERO);
        tokio::pin!(quiet);
        assert!(
            tokio::time::timeout(Duration::from_secs(60), &mut quiet)
                .await
                .is_err(),
            "no request yet"
        );
        let request = activity.request(true);
        let idle = activity.idle_for(Duration::from_secs(5));
        tokio::pin!(idle);
        // In flight for a minute: never idle.
        assert!(tokio::time::timeout(Duration::from_secs(60), &mut idle)
            .await
            .is_err());
        let ended = Instant::now();
        drop(request);
        idle.await;
        let took = Instant::now() - ended;
        assert!(
            took >= Duration::from_secs(5) && took <= Duration::from_secs(10),
            "{took:?}"
        );
        quiet.await;
    }
}
