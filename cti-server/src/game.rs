//! The game store behind the service: the open store, its commit events fed
//! to the live event stream, and the replacement of the core in place.
//!
//! Every use of the store goes through [`Game::store`], which hands out the
//! current store. Replacing the core ([`Game::swap_core`]) takes that away
//! for the moment of the swap: requests that arrive then wait (a few hundred
//! ms at most) while the old store commits what it has queued and closes, and
//! the same database is opened through the new library.

use crate::stream::Broadcaster;
use cti_ffi::{Api, Store, Subscription};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long a swap waits for reads in flight to let go of the old store.
const DRAIN: Duration = Duration::from_millis(500);

/// An open store and the subscription that feeds the event stream.
struct Live {
    /// Ended before the store closes (fields drop in order).
    _events: Option<Subscription>,
    store: Arc<Store>,
}

pub struct Game {
    /// `None` only if a failed swap could open the store with neither core.
    live: RwLock<Option<Live>>,
    events: Arc<Broadcaster>,
    /// Where the store lives, to open it again through another core.
    path: Option<PathBuf>,
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
}

/// What a swap did.
#[derive(Debug, Clone)]
pub struct Swapped {
    pub version: String,
    /// How long requests were held.
    pub paused: Duration,
}

impl Game {
    /// `path` is where `store` was opened (needed to swap the core).
    pub fn new(store: Store, path: Option<PathBuf>, events: Arc<Broadcaster>) -> Game {
        let live = Live::new(store, &events);
        Game {
            live: RwLock::new(Some(live)),
            events,
            path,
        }
    }

    /// The store as it is now (`None` after a swap that could reopen it
    /// with neither core).
    pub fn store(&self) -> Option<Arc<Store>> {
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        live.as_ref().map(|l| l.store.clone())
    }

    /// Loads the core at `core` and moves the store onto it. Blocks (run it
    /// off the async workers). On any failure the old core keeps serving.
    pub fn swap_core(&self, core: &Path) -> Result<Swapped, SwapError> {
        let path = self.path.as_ref().ok_or(SwapError::NoPath)?;
        let current = self.store().ok_or(SwapError::NoPath)?.api();
        let api = Api::load(core, current)?;
        let mut live = self.live.write().unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        // Requests that already hold the old store finish with it first.
        while live
            .as_ref()
            .is_some_and(|l| Arc::strong_count(&l.store) > 1)
        {
            if started.elapsed() > DRAIN {
                return Err(SwapError::Busy(DRAIN));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Closing commits every queued claim (their callers get answers).
        drop(live.take());
        let (store, failed) = match Store::open_with(api, path) {
            Ok(store) => (store, None),
            Err(e) => {
                let back = Store::open_with(current, path).map_err(SwapError::Open)?;
                (back, Some(e))
            }
        };
        *live = Some(Live::new(store, &self.events));
        if let Some(e) = failed {
            return Err(SwapError::Open(e));
        }
        Ok(Swapped {
            version: api.version().to_string(),
            paused: started.elapsed(),
        })
    }
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
