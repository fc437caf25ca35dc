//! The game store behind the service: the open store, its commit events fed
//! to the live event stream, the replacement of the core in place, and the
//! store's hand-over to another process (a re-exec).
//!
//! Every use of the store goes through [`Game::store`], which hands out the
//! current store. Replacing the core ([`Game::swap_core`]) takes that away
//! for the moment of the swap: requests that arrive then wait (without
//! holding a runtime thread) while the old store commits what it has queued
//! and closes, and the same database is opened through the new library.

use crate::metrics;
use crate::stream::Broadcaster;
use cti_ffi::{Api, ErrorKind, Origin, Store, Subscription};
use prometheus_client::encoding::DescriptorEncoder;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedRwLockWriteGuard, RwLock};

/// How long a swap waits for reads in flight to let go of the old store.
const DRAIN: Duration = Duration::from_millis(500);
/// How often an open tries again while another process holds the store.
const RETRY_LOCKED: Duration = Duration::from_millis(2);

/// Sets a freshly opened store up as the operator asked (claim limits), so
/// that a store reopened through another core behaves as the first one did.
#[derive(Clone)]
pub struct StoreSetup(pub Arc<SetupFn>);

/// What a [`StoreSetup`] runs on each store opened.
pub type SetupFn = dyn Fn(&Store) -> Result<(), cti_ffi::Error> + Send + Sync;

impl std::fmt::Debug for StoreSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreSetup")
    }
}

/// An open store and the subscription that feeds the event stream.
struct Live {
    /// Ended before the store closes (fields drop in order).
    _events: Option<Subscription>,
    store: Arc<Store>,
}

type Slot = Arc<RwLock<Option<Live>>>;

pub struct Game {
    /// `None` while closed for a hand-over, or after a failed swap or
    /// hand-over could reopen the store with no core.
    live: Slot,
    events: Arc<Broadcaster>,
    /// Where the store lives, to open it again through another core.
    path: Option<PathBuf>,
    setup: Option<StoreSetup>,
    /// The core serving the store (kept while the store is closed).
    core: Mutex<&'static Api>,
    swaps: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("{0}")]
    Load(#[from] cti_ffi::LoadError),
    #[error("the store was opened from no file that could be reopened")]
    NoPath,
    #[error("reads still held the old store after {0:?}; the old core keeps serving")]
    Busy(Duration),
    #[error("the new core cannot open the store ({0}); the old core keeps serving")]
    Open(cti_ffi::Error),
    #[error("the store could not be reopened with either core: {0}")]
    Lost(cti_ffi::Error),
    #[error("a worker thread failed: {0}")]
    Worker(String),
}

/// What a swap did.
#[derive(Debug, Clone)]
pub struct Swapped {
    pub version: String,
    /// How long requests were held.
    pub paused: Duration,
}

impl Game {
    /// `path` is where `store` was opened (needed to swap the core);
    /// `setup` is applied to every store opened later.
    pub fn new(
        store: Store,
        path: Option<PathBuf>,
        events: Arc<Broadcaster>,
        setup: Option<StoreSetup>,
    ) -> Game {
        let core = Mutex::new(store.api());
        let live = Live::new(store, &events);
        Game {
            live: Arc::new(RwLock::new(Some(live))),
            events,
            path,
            setup,
            core,
            swaps: AtomicU64::new(0),
        }
    }

    /// The store, once a swap in progress is over (`None` if the store is
    /// closed for good: a failed swap or hand-over that could not reopen it).
    pub async fn store(&self) -> Option<Arc<Store>> {
        let live = self.live.read().await;
        live.as_ref().map(|l| l.store.clone())
    }

    /// The store now, without waiting: `None` also while a swap or a
    /// hand-over holds it. For callers that must not wait (metrics).
    pub fn store_now(&self) -> Option<Arc<Store>> {
        let live = self.live.try_read().ok()?;
        live.as_ref().map(|l| l.store.clone())
    }

    /// The core serving the store.
    pub fn core(&self) -> &'static Api {
        *self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The file the serving core was loaded from.
    pub fn core_path(&self) -> Option<PathBuf> {
        match &self.core().origin {
            Origin::Linked => Api::linked_path(),
            Origin::Loaded(path) => Some(path.clone()),
        }
    }

    /// Core swaps done since start.
    pub fn swaps(&self) -> u64 {
        self.swaps.load(Relaxed)
    }

    /// Loads the core at `core` and moves the store onto it. Requests that
    /// need the store wait meanwhile (asynchronously); those that already
    /// hold it finish first. On any failure the old core keeps serving.
    pub async fn swap_core(&self, core: &Path) -> Result<Swapped, SwapError> {
        let path = self.path.clone().ok_or(SwapError::NoPath)?;
        let current = self.core();
        let file = core.to_path_buf();
        let api = blocking(move || Api::load(&file, current)).await??;
        let mut live = self.live.clone().write_owned().await;
        let started = Instant::now();
        wait_for_holders(&live).await?;
        let old = live.take();
        let setup = self.setup.clone();
        let opened = blocking(move || {
            // Closing commits every queued claim (their callers get answers).
            drop(old);
            match open(api, &path, setup.as_ref()) {
                Ok(store) => (Ok(store), None),
                Err(e) => (open(current, &path, setup.as_ref()), Some(e)),
            }
        })
        .await?;
        let (store, failed) = match opened {
            (Ok(store), failed) => (store, failed),
            (Err(e), _) => return Err(SwapError::Lost(e)),
        };
        *live = Some(Live::new(store, &self.events));
        drop(live);
        let paused = started.elapsed();
        if let Some(e) = failed {
            return Err(SwapError::Open(e));
        }
        *self.core.lock().unwrap_or_else(|p| p.into_inner()) = api;
        self.swaps.fetch_add(1, Relaxed);
        Ok(Swapped {
            version: api.version().to_string(),
            paused,
        })
    }

    /// Closes the store so that another process can open it (a re-exec).
    /// Requests that need the store wait from now on, until
    /// [`Closed::reopen`] or the end of the process.
    pub async fn close(&self) -> Result<Closed, SwapError> {
        let path = self.path.clone().ok_or(SwapError::NoPath)?;
        let mut live = self.live.clone().write_owned().await;
        wait_for_holders(&live).await?;
        let old = live.take();
        blocking(move || drop(old)).await?;
        Ok(Closed {
            live,
            api: self.core(),
            path,
            setup: self.setup.clone(),
            events: self.events.clone(),
        })
    }

    /// The core serving the store (read at each scrape, so it follows a
    /// swap), the swaps so far and the core files kept mapped.
    pub fn encode(&self, e: &mut DescriptorEncoder) -> std::fmt::Result {
        let path = self
            .core_path()
            .map_or_else(String::new, |p| p.display().to_string());
        let core = [("version", self.core().version()), ("path", path.as_str())];
        metrics::info(e, "core", "The core library serving the store.", &core)?;
        let help = "Core libraries swapped in place.";
        metrics::counter(e, "core_swaps", help, self.swaps())?;
        let help = "Core files loaded at run time, kept mapped (never unloaded).";
        metrics::gauge(e, "core_files_loaded", help, Api::loaded_count())
    }
}

/// The store, closed for another process to open it.
pub struct Closed {
    live: OwnedRwLockWriteGuard<Option<Live>>,
    api: &'static Api,
    path: PathBuf,
    setup: Option<StoreSetup>,
    events: Arc<Broadcaster>,
}

impl Closed {
    /// Opens the store again (a hand-over that failed), waiting up to
    /// `wait` for the other process to let go of it. Requests go on then.
    pub async fn reopen(mut self, wait: Duration) -> Result<(), cti_ffi::Error> {
        let (api, path, setup) = (self.api, self.path.clone(), self.setup.clone());
        let store = blocking(move || open_when_free(api, &path, setup.as_ref(), wait))
            .await
            .map_err(|e| cti_ffi::Error {
                kind: ErrorKind::OpenFailed,
                message: e.to_string(),
                retry_after: None,
            })??;
        *self.live = Some(Live::new(store, &self.events));
        Ok(())
    }
}

/// Opens the store at `path` with `api` and sets it up, trying again while
/// another process holds it (it is handing it over) for up to `wait`.
pub fn open_when_free(
    api: &'static Api,
    path: &Path,
    setup: Option<&StoreSetup>,
    wait: Duration,
) -> Result<Store, cti_ffi::Error> {
    let deadline = Instant::now() + wait;
    loop {
        match open(api, path, setup) {
            Err(e) if e.kind == ErrorKind::Locked && Instant::now() < deadline => {
                std::thread::sleep(RETRY_LOCKED);
            }
            result => return result,
        }
    }
}

fn open(
    api: &'static Api,
    path: &Path,
    setup: Option<&StoreSetup>,
) -> Result<Store, cti_ffi::Error> {
    let store = Store::open_with(api, path)?;
    if let Some(setup) = setup {
        (setup.0)(&store)?;
    }
    Ok(store)
}

/// Waits (at most `DRAIN`) until no request holds the store any more.
async fn wait_for_holders(live: &Option<Live>) -> Result<(), SwapError> {
    let started = Instant::now();
    while live
        .as_ref()
        .is_some_and(|l| Arc::strong_count(&l.store) > 1)
    {
        if started.elapsed() > DRAIN {
            return Err(SwapError::Busy(DRAIN));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

/// Runs `work` on the blocking pool: loading a library, closing a store
/// (a commit) and opening one touch the disk.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SwapError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SwapError::Worker(e.to_string()))
}

impl Live {
    fn new(store: Store, events: &Arc<Broadcaster>) -> Live {
        let sink = events.clone();
        let subscription = store
            .subscribe(move |event| sink.send_core_event(event))
            .inspect_err(|e| tracing::warn!(error = %e, "no live events: cannot subscribe"))
            .ok();
        Live {
            _events: subscription,
            store: Arc::new(store),
        }
    }
}
