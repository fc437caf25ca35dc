//! The readers: threads that time the JSON renderings the C ABI serves
//! (`Store::json` with a `Query`, what `cti_blocks_json`, `cti_ranks_top_json` and
//! `cti_score_compat_json` return) while the claimers run.
//!
//! A read's answer may come from the rendering the store caches per version
//! of the data (a commit, or a window sliding, makes a new version): with
//! many readers most answers are such hits. So each reader also measures
//! *fresh* reads: every few rounds it makes a claim of its own, waits for it
//! to commit, and reads at once, which must render anew (each query is read
//! by one thread only, so nobody rendered it since that commit; the bench
//! checks by pointer that it was not a cached answer).
//!
//! One thread reads the board (`blocks` and `ranks`, hour and all windows)
//! often; another reads the whole `score` (hour and all) less often, as a
//! server answers both kinds of client at once. A board read that overlapped
//! a `score` rendering is also counted apart (`alone` holds the others), to
//! tell the board's own cost from the wait behind a long rendering.

use cti_core::{Query, Store, Window};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The rows of a ranking a leaderboard shows (`cti_ranks_top_json`).
const TOP: u32 = 100;

/// The measured renderings, in CSV order.
pub const QUERIES: [(&str, Query); 6] = [
    ("blocks_hour", Query::Blocks(Window::Hour)),
    ("blocks_all", Query::Blocks(Window::All)),
    ("ranks_hour", Query::Ranks(Window::Hour, TOP)),
    ("ranks_all", Query::Ranks(Window::All, TOP)),
    ("score_hour", Query::Score(Window::Hour)),
    ("score_all", Query::Score(Window::All)),
];
const BOARD: std::ops::Range<usize> = 0..4;
const SCORE: std::ops::Range<usize> = 4..6;

/// Samples are not recorded while this is the bucket (between weeks).
pub const PAUSED: usize = usize::MAX;

/// Where the time of slow reads (over [`SLOW_US`]) went, in microseconds
/// summed over them: on a CPU, runnable but waiting for a CPU (the machine
/// was busy), and neither (blocked: a lock, or the disk).
#[derive(Default, Clone, Copy, Debug)]
pub struct Split {
    pub reads: u64,
    pub cpu_us: f64,
    pub queued_us: f64,
    pub blocked_us: f64,
}

/// A read slower than this is counted in [`Split`].
pub const SLOW_US: f64 = 1000.0;

/// Read times of one stretch of the run, in microseconds.
#[derive(Default, Clone)]
pub struct Bucket {
    pub reads: [Vec<f64>; 6],
    /// Of `reads`, those that overlapped no `score` rendering.
    pub alone: [Vec<f64>; 6],
    /// Of `reads`, the time each spent on a CPU: what the read itself cost,
    /// without the waits for a CPU or a lock.
    pub cpu: [Vec<f64>; 6],
    /// Reads right after the reader's own commit: never cached.
    pub fresh: [Vec<f64>; 6],
    /// Reads answered from the cached rendering.
    pub hits: [u64; 6],
    /// Size of the last answer, in bytes.
    pub bytes: [usize; 6],
    /// Where the time of the slow reads (of `reads`) went.
    pub slow: [Split; 6],
}

/// Where the readers put their samples: one bucket per stretch of the run.
pub struct Samples {
    buckets: Mutex<Vec<Bucket>>,
    current: AtomicUsize,
    /// `score` renderings started, and whether one is under way.
    score_started: AtomicU64,
    score_busy: AtomicBool,
}

/// What a read saw of the `score` reader, to tell whether they overlapped.
#[derive(Clone, Copy, PartialEq, Eq)]
struct ScoreMark(u64, bool);

impl Samples {
    pub fn new(buckets: usize) -> Samples {
        Samples {
            buckets: Mutex::new(vec![Bucket::default(); buckets]),
            current: AtomicUsize::new(PAUSED),
            score_started: AtomicU64::new(0),
            score_busy: AtomicBool::new(false),
        }
    }

    fn score_mark(&self) -> ScoreMark {
        ScoreMark(
            self.score_started.load(Ordering::Acquire),
            self.score_busy.load(Ordering::Acquire),
        )
    }

    fn score_begins(&self) {
        self.score_started.fetch_add(1, Ordering::AcqRel);
        self.score_busy.store(true, Ordering::Release);
    }

    fn score_ends(&self) {
        self.score_busy.store(false, Ordering::Release);
    }

    pub fn switch(&self, bucket: usize) {
        self.current.store(bucket, Ordering::Release);
    }

    fn current(&self) -> usize {
        self.current.load(Ordering::Acquire)
    }

    fn record(&self, bucket: usize, q: usize, read: Read) {
        let mut all = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = &mut all[bucket];
        if read.fresh {
            b.fresh[q].push(read.us);
        } else {
            b.reads[q].push(read.us);
            b.hits[q] += u64::from(read.hit);
            b.cpu[q].push(read.cpu_us);
            if read.alone {
                b.alone[q].push(read.us);
            }
            if read.us > SLOW_US {
                let s = &mut b.slow[q];
                s.reads += 1;
                s.cpu_us += read.cpu_us;
                s.queued_us += read.queued_us;
                s.blocked_us += (read.us - read.cpu_us - read.queued_us).max(0.0);
            }
        }
        b.bytes[q] = read.bytes;
    }

    pub fn take(&self) -> Vec<Bucket> {
        std::mem::take(&mut *self.buckets.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn get(&self, bucket: usize) -> Bucket {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())[bucket].clone()
    }
}

/// One timed read.
struct Read {
    us: f64,
    fresh: bool,
    hit: bool,
    /// No `score` rendering ran meanwhile.
    alone: bool,
    bytes: usize,
    /// Of `us`: time on a CPU, and time runnable but waiting for one.
    cpu_us: f64,
    queued_us: f64,
}

/// This thread's time on a CPU so far (`CLOCK_THREAD_CPUTIME_ID`, exact),
/// in microseconds.
fn cpu_us() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e6 + ts.tv_nsec as f64 / 1e3
}

/// This thread's time runnable but waiting on a run queue so far, in
/// microseconds (`/proc/thread-self/schedstat`, counted when the thread
/// gets a CPU back).
fn queued_us() -> f64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    text.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e3)
}

/// How a reader paces itself.
#[derive(Clone, Copy)]
pub struct Pace {
    pub every: Duration,
    /// Every this many rounds, a fresh round (claim, then read).
    pub probe_every: u64,
}

pub struct Readers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Readers {
    pub fn start(store: &Arc<Store>, samples: &Arc<Samples>, board: Pace, score: Pace) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let spawn =
            |name: &str, queries: std::ops::Range<usize>, pace: Pace, probe_ip: &'static str| {
                let reader = Reader {
                    store: store.clone(),
                    samples: samples.clone(),
                    stop: stop.clone(),
                    queries,
                    pace,
                    probe_ip,
                };
                // Named, so that a profile can tell the readers apart (perf --comm).
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || reader.run())
                    .expect("a reader thread")
            };
        // A pace of zero turns that reader off.
        let threads = [
            ("board-reader", BOARD, board, "192.0.2.1"),
            ("score-reader", SCORE, score, "192.0.2.2"),
        ]
        .into_iter()
        .filter(|(_, _, pace, _)| !pace.every.is_zero())
        .map(|(name, queries, pace, ip)| spawn(name, queries, pace, ip))
        .collect();
        Readers { stop, threads }
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads {
            t.join().expect("a reader panicked");
        }
    }
}

struct Reader {
    store: Arc<Store>,
    samples: Arc<Samples>,
    stop: Arc<AtomicBool>,
    queries: std::ops::Range<usize>,
    pace: Pace,
    /// The address this reader's own claims take turns on (TEST-NET-1).
    probe_ip: &'static str,
}

impl Reader {
    fn run(self) {
        let mut last: Vec<Option<Arc<str>>> = vec![None; QUERIES.len()];
        let mut round = 0u64;
        while !self.stop.load(Ordering::Acquire) {
            let started = Instant::now();
            if self.samples.current() != PAUSED {
                round += 1;
                let fresh = round.is_multiple_of(self.pace.probe_every);
                if fresh {
                    self.commit_own(round);
                }
                for q in self.queries.clone() {
                    self.read(q, fresh, &mut last[q]);
                }
            }
            // In short steps, so that stopping does not wait out a 30 s pace.
            while !self.stop.load(Ordering::Acquire) && started.elapsed() < self.pace.every {
                let left = self.pace.every.saturating_sub(started.elapsed());
                std::thread::sleep(left.min(Duration::from_millis(50)));
            }
        }
    }

    /// A claim that changes the board (the address changes hands), so that
    /// every window's data has a new version when it returns.
    fn commit_own(&self, round: u64) {
        let nick = if (round / self.pace.probe_every).is_multiple_of(2) {
            "probe-a"
        } else {
            "probe-b"
        };
        self.store
            .claim(self.probe_ip, nick)
            .expect("the reader's own claim");
    }

    fn read(&self, q: usize, fresh: bool, last: &mut Option<Arc<str>>) {
        let bucket = self.samples.current();
        if bucket == PAUSED {
            return;
        }
        let is_score = SCORE.contains(&q);
        if is_score {
            self.samples.score_begins();
        }
        let before = self.samples.score_mark();
        // The CPU clock next to the wall clock on both sides, so that the
        // reads of /proc are in neither.
        let queued = queued_us();
        let cpu = cpu_us();
        let started = Instant::now();
        let text = self.store.json(QUERIES[q].1).expect("a read");
        let us = started.elapsed().as_secs_f64() * 1e6;
        let cpu_after = cpu_us();
        let queued_after = queued_us();
        let after = self.samples.score_mark();
        if is_score {
            self.samples.score_ends();
        }
        let hit = last.as_ref().is_some_and(|l| Arc::ptr_eq(l, &text));
        assert!(
            !(fresh && hit),
            "a read right after a commit came from the cache: the fresh figures would be wrong"
        );
        let read = Read {
            us,
            fresh,
            hit,
            alone: !is_score && before == after && !before.1,
            bytes: text.len(),
            cpu_us: cpu_after - cpu,
            queued_us: queued_after - queued,
        };
        self.samples.record(bucket, q, read);
        *last = Some(text);
    }
}
