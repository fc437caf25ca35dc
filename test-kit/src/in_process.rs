//! A server run inside the test process, on its own thread and tokio
//! runtime, on a loopback port; stopped (its shutdown future resolved, the
//! thread joined) when dropped.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

/// Resolves when the test drops the server.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

pub struct InProcess<T> {
    pub addr: SocketAddr,
    /// What `setup` handed back for the test (the app, say).
    pub state: T,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<T: Send + 'static> InProcess<T> {
    /// Binds `bind` (such as `127.0.0.1:0`) on a two-thread runtime and
    /// calls `setup` inside it with the listener and the shutdown signal;
    /// `setup` returns the state for the test and the serving future.
    pub fn start<S, F>(bind: &str, setup: S) -> InProcess<T>
    where
        S: FnOnce(tokio::net::TcpListener, Shutdown) -> (T, F) + Send + 'static,
        F: Future<Output = ()>,
    {
        let (ready, started) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let bind = bind.to_string();
        let thread = std::thread::spawn(move || {
            let rt = crate::runtime_two_threads();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&bind)
                    .await
                    .unwrap_or_else(|e| panic!("bind {bind}: {e}"));
                let addr = listener.local_addr().expect("a bound address");
                let (state, serving) = setup(listener, Box::pin(async { drop(stopped.await) }));
                let _ = ready.send((addr, state));
                serving.await;
            });
        });
        let (addr, state) = started
            .recv_timeout(Duration::from_secs(10))
            .expect("the server started within 10 s");
        InProcess {
            addr,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl<T> Drop for InProcess<T> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic on the server's thread fails the test here, unless
            // the test is already failing.
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("the in-process server panicked");
            }
        }
    }
}
