//! Waits bounded in time: for a condition, and for a server to close a
//! connection that a slow client keeps busy.

use std::time::{Duration, Instant};

/// Polls `probe` every 50 ms until it gives a value; fails the test after `limit`.
pub fn until<T>(what: &str, limit: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Polls `ok` every 50 ms until it holds; fails the test after `limit`.
pub fn eventually(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    until(what, limit, || ok().then_some(()))
}

/// Sends `prefix` one byte every `gap` (then filler bytes) and never
/// finishes: returns how long the server took to close the connection, or
/// `None` if it was still open after `limit`.
pub async fn dribble<S>(mut s: S, prefix: &[u8], gap: Duration, limit: Duration) -> Option<Duration>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    let mut buf = [0u8; 512];
    for i in 0.. {
        if started.elapsed() > limit {
            return None;
        }
        let byte = prefix.get(i).copied().unwrap_or(b'a');
        if s.write_all(&[byte]).await.is_err() || s.flush().await.is_err() {
            return Some(started.elapsed());
        }
        tokio::select! {
            read = s.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => {} // an error page, say: the close still has to come
            },
            () = tokio::time::sleep(gap) => {}
        }
    }
    unreachable!("the loop ends by returning")
}
