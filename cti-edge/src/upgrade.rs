//! Upgrades that drop nothing. Two kinds:
//!
//! - **Core swap** (`SIGUSR2`, `POST /admin/core`): a newer `libcti_core.so`
//!   is loaded into this process and the store moved onto it
//!   ([`cti_server::game::Game::swap_core`]); connections stay open.
//! - **Re-exec** (`SIGUSR1`, `POST /admin/reexec`): the edge binary is
//!   started again on the same listening sockets, the store is handed over
//!   and this process drains and exits (see [`serve`]).
//!
//! One upgrade at a time; a refused or failed one leaves this process
//! serving as before.

use crate::conn::{self, Edge};
use cti_server::conn::{Connections, DrainState, Draining};
use cti_server::game::Swapped;
use cti_server::handover::Successor;
use cti_server::operator::AdminConnections;
use cti_server::{cli, listen, notify};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Mutex};

/// How long connections get to end by themselves once a hand-over starts
/// (HTTP/1.1 after its next response, HTTP/2 after GOAWAY) before the rest
/// are closed.
const HANDOVER_DRAIN: Duration = Duration::from_secs(1);
/// Then, how long requests still in flight get before the store closes.
const STOP_DRAIN: Duration = Duration::from_millis(500);
/// How long a process that handed over waits for admin answers to leave.
const ADMIN_ANSWERS: Duration = Duration::from_secs(1);

/// What a re-exec did.
#[derive(Debug, Clone)]
pub struct Handed {
    /// The new process.
    pub pid: u32,
    /// From the moment this process stopped accepting to the new one's
    /// `ready`: how long new connections waited in the backlog.
    pub paused: Duration,
}

type Reply = oneshot::Sender<Result<Handed, String>>;

/// The upgrades of one running edge.
pub struct Upgrades {
    pub edge: Arc<Edge>,
    /// The core file `SIGUSR2` loads (by default the file the linked core
    /// was loaded from: what a package upgrade replaces).
    pub core_file: Option<PathBuf>,
    /// How long a new process has to be prepared, then ready, and how long
    /// a process waits for the store to be free.
    pub timeout: Duration,
    /// One upgrade at a time.
    one: Mutex<()>,
    reexecs: mpsc::Sender<Option<Reply>>,
}

/// Re-exec requests, for [`serve`].
pub struct Requests(mpsc::Receiver<Option<Reply>>);

impl Upgrades {
    pub fn new(
        edge: Arc<Edge>,
        core_file: Option<PathBuf>,
        timeout: Duration,
    ) -> (Arc<Upgrades>, Requests) {
        let (tx, rx) = mpsc::channel(4);
        let upgrades = Upgrades {
            edge,
            core_file,
            timeout,
            one: Mutex::new(()),
            reexecs: tx,
        };
        (Arc::new(upgrades), Requests(rx))
    }

    /// Swaps the core for the one at `path` (default: `core_file`); logs
    /// what happened. On refusal the old core keeps serving.
    pub async fn swap(&self, path: Option<PathBuf>) -> Result<Swapped, String> {
        let Some(path) = path.or_else(|| self.core_file.clone()) else {
            let why = "no core file: give one (--core-file)".to_string();
            tracing::error!("core swap refused: {why}");
            return Err(why);
        };
        let _one = self.one.lock().await;
        let game = self.edge.app.game();
        let old = game.core().version();
        match game.swap_core(&path).await {
            Ok(swapped) => {
                tracing::info!(
                    from = old,
                    version = %swapped.version,
                    path = %path.display(),
                    paused_ms = swapped.paused.as_secs_f64() * 1000.0,
                    swaps = game.swaps(),
                    files_kept_loaded = cti_ffi::Api::loaded_count(),
                    "core swapped"
                );
                Ok(swapped)
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, version = old, "core swap refused; the old core keeps serving");
                Err(e.to_string())
            }
        }
    }

    /// Asks [`serve`] for a re-exec and waits for the outcome.
    pub async fn reexec(&self) -> Result<Handed, String> {
        let (tx, rx) = oneshot::channel();
        self.reexecs
            .send(Some(tx))
            .await
            .map_err(|_| "this process is no longer serving".to_string())?;
        rx.await
            .map_err(|_| "this process is no longer serving".to_string())?
    }

    /// `SIGUSR2` swaps the core (from `core_file`), `SIGUSR1` re-execs.
    pub fn on_signals(self: &Arc<Self>) -> Result<(), String> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut usr2 = signal(SignalKind::user_defined2()).map_err(|e| e.to_string())?;
        let mut usr1 = signal(SignalKind::user_defined1()).map_err(|e| e.to_string())?;
        let upgrades = self.clone();
        tokio::spawn(async move {
            while usr2.recv().await.is_some() {
                tracing::info!("SIGUSR2: swapping the core");
                let _ = upgrades.swap(None).await;
            }
        });
        let reexecs = self.reexecs.clone();
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                tracing::info!("SIGUSR1: re-executing");
                if reexecs.send(None).await.is_err() {
                    return;
                }
            }
        });
        Ok(())
    }
}

/// Serves `listener` until SIGTERM/SIGINT, or until a re-exec has handed
/// everything over; then drains within `grace`. `operator` is the operator
/// listener's descriptor, passed on too.
pub async fn serve(
    upgrades: Arc<Upgrades>,
    mut requests: Requests,
    listener: tokio::net::TcpListener,
    operator: Option<RawFd>,
    grace: Duration,
    admins: AdminConnections,
) {
    let edge = upgrades.edge.clone();
    let draining = Draining::default();
    let handler = |tcp, peer, drain| conn::handle(edge.clone(), tcp, peer, drain);
    let connections = &edge.app.connections;
    let mut sockets = vec![(listener.as_raw_fd(), listen::SERVICE)];
    sockets.extend(operator.map(|fd| (fd, listen::OPERATOR)));
    let shutdown = cli::shutdown_signal();
    tokio::pin!(shutdown);
    let handed = loop {
        let next = async {
            tokio::select! {
                () = &mut shutdown => None,
                Some(reply) = requests.0.recv() => Some(reply),
            }
        };
        let Some(reply) = connections
            .accept_until(&listener, &draining, next, &handler)
            .await
        else {
            break false;
        };
        let _one = upgrades.one.lock().await;
        notify::reloading();
        let reexec = Reexec {
            upgrades: &upgrades,
            connections,
            listener: &listener,
            draining: &draining,
            sockets: &sockets,
        };
        let result = reexec.run(&handler).await;
        match &result {
            Ok(h) => tracing::info!(
                pid = h.pid,
                paused_ms = h.paused.as_secs_f64() * 1000.0,
                "re-exec: the new process serves; finishing in-flight requests"
            ),
            Err(e) => {
                tracing::error!(error = %e, "re-exec failed; this process keeps serving");
                notify::ready(false);
            }
        }
        let ok = result.is_ok();
        if let Some(reply) = reply {
            let _ = reply.send(result);
        }
        if ok {
            break true;
        }
    };
    drop(listener);
    if !handed {
        notify::stopping();
    }
    edge.app.shutdown();
    Connections::finish(&draining, grace).await;
    if handed {
        admins.closed(ADMIN_ANSWERS).await;
    }
}

/// One re-exec, from the running process's side.
struct Reexec<'a> {
    upgrades: &'a Upgrades,
    connections: &'a Connections,
    listener: &'a tokio::net::TcpListener,
    draining: &'a Draining,
    sockets: &'a [(RawFd, &'static str)],
}

impl Reexec<'_> {
    async fn run<H, F>(&self, handler: &H) -> Result<Handed, String>
    where
        H: Fn(tokio::net::TcpStream, std::net::SocketAddr, cti_server::conn::Drain) -> F,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let limit = self.upgrades.timeout;
        let program = listen::current_exe().map_err(|e| format!("/proc/self/exe: {e}"))?;
        let args: Vec<_> = std::env::args_os().skip(1).collect();
        let mut successor =
            Successor::start(&program, &args, self.sockets).map_err(|e| e.to_string())?;
        let pid = successor.pid();
        tracing::info!(pid, program = %program.display(), "re-exec: started the new process");
        // Serve on while it starts.
        let prepared = self
            .connections
            .accept_until(
                self.listener,
                self.draining,
                successor.prepared(limit),
                handler,
            )
            .await;
        if let Err(e) = prepared {
            successor.abandon().await;
            return Err(e.to_string());
        }
        // From here on new connections wait in the backlog for the new
        // process. Those open here end without losing a request.
        let paused = Instant::now();
        self.draining.set(DrainState::Handover);
        let app = &self.upgrades.edge.app;
        app.events.end_streams();
        if !self.draining.finished(HANDOVER_DRAIN).await {
            self.draining.set(DrainState::Stop);
            self.draining.finished(STOP_DRAIN).await;
        }
        let closed = match app.game().close().await {
            Ok(closed) => closed,
            Err(e) => {
                successor.abandon().await;
                self.draining.set(DrainState::Serving);
                return Err(format!("cannot close the store: {e}"));
            }
        };
        tracing::info!(pid, "re-exec: store closed; waiting for the new process");
        match successor.ready(limit).await {
            Ok(()) => Ok(Handed {
                pid,
                paused: paused.elapsed(),
            }),
            Err(e) => {
                successor.abandon().await;
                if let Err(e) = closed.reopen(limit).await {
                    tracing::error!(error = %e, "cannot reopen the store; claims get 503");
                }
                self.draining.set(DrainState::Serving);
                Err(e.to_string())
            }
        }
    }
}
