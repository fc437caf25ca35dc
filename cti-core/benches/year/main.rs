//! A year of the game in one run: the store is driven through simulated
//! weeks on a manual clock with realistic traffic (see [`traffic`]), and every
//! week records claims per second, read latencies of the renderings the C ABI
//! serves, memory, and the store's size on disk.
//!
//! `cargo bench -p cti-core --bench year -- [--days 364] [--claims 100000000]
//!  [--players 300000] [--out DIR] [--blocking 32] [--in-flight 512]
//!  [--read-every-ms 50] [--score-every-ms 30000] [--probe-every 10]
//!  [--calm-secs 10] [--seed 1] [--keep-db] [--traffic-only]`
//!
//! The board (blocks, and the top 100 of ranks) is read every 50 ms and the whole score every
//! 30 s: a score rendering takes seconds once a few hundred thousand players
//! are live, and a pace near that length starves the claims (see the README).
//! A pace of 0 turns a reader off.
//!
//! Writes `year.csv` (one row per week), `first-hours.csv`, `year.svg` and
//! `summary.txt` to `--out` (default `target/year/`). The first two simulated
//! hours are paced (`--calm-secs` of wall time each) so that reads before
//! any claim lapsed and reads while the hour window slides are measured at
//! the same pace, enough of them to give a p99; week 1's claims per second
//! counts from hour 3 on. Each read is also split into time on a CPU,
//! time runnable but waiting for a CPU, and time blocked (a lock, the disk),
//! so that a slow p99 on a busy 2-core machine says whether the core or the
//! machine made it slow. Speed is reported, never asserted: the run fails
//! only on a functional fault (a claim failing, `check()` finding the
//! aggregates wrong, a missing CSV row).

mod chart;
mod load;
mod measure;
mod reads;
mod report;
mod traffic;

use cti_core::{Limits, ManualClock, NickLimits, Store, Window};
use load::{Claimers, Gate};
use reads::{Pace, Readers, Samples, PAUSED};
use report::{Kind, Week};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use traffic::{Traffic, DAY, T0};

struct Args {
    days: u32,
    claims: u64,
    players: usize,
    out: PathBuf,
    blocking: usize,
    in_flight: usize,
    read_every: Duration,
    score_every: Duration,
    probe_every: u64,
    calm: Duration,
    seed: u64,
    keep_db: bool,
    /// Only generate the traffic and describe it; no store.
    traffic_only: bool,
}

/// `<target>/year`, from the bench executable at `<target>/release/deps/`.
fn default_out() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|t| t.join("year")))
        .unwrap_or_else(|| PathBuf::from("target/year"))
}

fn args() -> Args {
    let mut a = Args {
        days: 364,
        claims: 100_000_000,
        players: 300_000,
        out: default_out(),
        blocking: 32,
        in_flight: 512,
        read_every: Duration::from_millis(50),
        score_every: Duration::from_millis(30_000),
        probe_every: 10,
        calm: Duration::from_secs(10),
        seed: 1,
        keep_db: false,
        traffic_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let mut number = || -> u64 {
            let v = value();
            v.replace('_', "")
                .parse()
                .unwrap_or_else(|_| panic!("{flag}: {v:?} is not a whole number"))
        };
        match flag.as_str() {
            "--days" => a.days = number() as u32,
            "--claims" => a.claims = number(),
            "--players" => a.players = number() as usize,
            "--out" => a.out = PathBuf::from(value()),
            "--blocking" => a.blocking = number() as usize,
            "--in-flight" => a.in_flight = number() as usize,
            "--read-every-ms" => a.read_every = Duration::from_millis(number()),
            "--score-every-ms" => a.score_every = Duration::from_millis(number()),
            "--probe-every" => a.probe_every = number().max(1),
            "--calm-secs" => a.calm = Duration::from_secs(number()),
            "--seed" => a.seed = number(),
            "--keep-db" => a.keep_db = true,
            "--traffic-only" => a.traffic_only = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(a.days >= 1, "--days must be at least 1");
    assert!(a.players >= 1, "--players must be at least 1");
    assert!(
        a.blocking + a.in_flight > 0,
        "no claimers: give --blocking or --in-flight"
    );
    a
}

fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Everything a run keeps between its phases.
struct Run {
    args: Args,
    traffic: Arc<Traffic>,
    /// `None` once closed at the end.
    store: Option<Arc<Store>>,
    gate: Arc<Gate>,
    samples: Arc<Samples>,
    files: measure::Files,
    addresses: measure::Addresses,
    /// Claims acknowledged so far.
    done: u64,
}

fn main() {
    let args = args();
    let weeks = (args.days as usize).div_ceil(7);
    println!(
        "year: {} claims over {} days ({weeks} weeks), {} players, {} blocking callers + {} callback claims in flight, {} cores, load {:.2}",
        args.claims,
        args.days,
        args.players,
        args.blocking,
        args.in_flight,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    let traffic = Arc::new(Traffic::new(
        args.claims,
        args.days,
        args.players,
        args.seed,
    ));
    if args.traffic_only {
        print!("{}", traffic::describe(&traffic));
        return;
    }
    let rss_base = measure::rss_kib();
    let store_dir = args.out.join("store");
    let _ = std::fs::remove_dir_all(&store_dir);
    std::fs::create_dir_all(&store_dir).expect("creating the output directory");
    let db = store_dir.join("year.db");
    let clock = Arc::new(ManualClock::new(T0));
    let store = Arc::new(Store::open_with_clock(&db, clock.clone()).expect("opening the store"));
    store.set_limits(Limits::OFF).unwrap();
    store.set_nick_limits(NickLimits::OFF).unwrap();
    let gate = Arc::new(Gate::new(traffic.clone(), clock.clone()));
    let claimers = Claimers::start(&store, &gate, args.blocking, args.in_flight);
    let samples = Arc::new(Samples::new(2 + weeks));
    let readers = Readers::start(
        &store,
        &samples,
        Pace {
            every: args.read_every,
            probe_every: args.probe_every,
        },
        Pace {
            every: args.score_every,
            probe_every: args.probe_every.div_ceil(5).max(2),
        },
    );
    let mut run = Run {
        files: measure::Files::new(&db),
        addresses: measure::Addresses::open(&db),
        args,
        traffic,
        store: Some(store),
        gate,
        samples,
        done: 0,
    };
    let calm_claims = [run.calm_hour(0), run.calm_hour(1)];
    // Written now too, so that a long run stopped early keeps it.
    write(
        &run.args.out,
        "first-hours.csv",
        &report::first_hours_csv(&run.samples.get(0), &run.samples.get(1), calm_claims),
    );
    let mut done_weeks: Vec<Week> = Vec::with_capacity(weeks);
    for w in 0..weeks {
        done_weeks.push(run.week(w));
        // Rewritten every week, so a long run that stops early leaves its rows
        // and its chart.
        write(&run.args.out, "year.csv", &report::weeks_csv(&done_weeks));
        write(
            &run.args.out,
            "year.svg",
            &chart::year(&done_weeks, run.args.claims, run.args.players),
        );
    }
    let weeks = done_weeks;
    readers.stop();
    run.gate.stop();
    claimers.join();
    let buckets = run.samples.take();
    let out = run.args.out.clone();
    write(&out, "year.csv", &report::weeks_csv(&weeks));
    write(
        &out,
        "first-hours.csv",
        &report::first_hours_csv(&buckets[0], &buckets[1], calm_claims),
    );
    write(
        &out,
        "year.svg",
        &chart::year(&weeks, run.args.claims, run.args.players),
    );
    let finish = run.finish(&clock);
    let summary = summary(&run, &weeks, &buckets, rss_base, &finish);
    write(&out, "summary.txt", &summary);
    print!("{summary}");
    println!("year: wrote {}", out.display());
    let rows = std::fs::read_to_string(out.join("year.csv"))
        .expect("reading year.csv back")
        .lines()
        .count();
    assert_eq!(
        rows,
        1 + weeks.len(),
        "year.csv: a header and one row per week"
    );
    if let Err(e) = &finish.check {
        panic!(
            "check() failed: {e}\nthe store is kept in {}",
            store_dir.display()
        );
    }
    if !run.args.keep_db {
        let _ = std::fs::remove_dir_all(&store_dir);
    }
}

fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text)
        .unwrap_or_else(|e| panic!("writing {}: {e}", dir.join(name).display()));
}

/// What the end of the run measured.
struct Finish {
    /// What `check()` said: the aggregates against a recount of the claims.
    check: Result<(), String>,
    check_s: f64,
    reopen_s: f64,
    claims_committed: u64,
}

impl Run {
    /// Simulated hour `h` (0 or 1) at a fixed, slow pace: its claims spread
    /// over `--calm-secs` of wall time. Returns its claims.
    fn calm_hour(&mut self, h: usize) -> u64 {
        let (start, end) = (self.done, self.traffic.end_of_hour(h));
        self.samples.switch(h);
        let began = Instant::now();
        loop {
            let f = (began.elapsed().as_secs_f64() / self.args.calm.as_secs_f64()).min(1.0);
            self.gate.raise(start + ((end - start) as f64 * f) as u64);
            if f >= 1.0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.gate.drain(end);
        self.samples.switch(PAUSED);
        self.done = end;
        end - start
    }

    /// Simulated week `w` at full speed, then its measurements.
    fn week(&mut self, w: usize) -> Week {
        let last_hour = ((w + 1) * 7 * 24).min(self.traffic.hours()) - 1;
        let (start, end) = (self.done, self.traffic.end_of_hour(last_hour));
        let stats = self.store().stats().expect("stats");
        let retried = self.gate.retried.load(Ordering::Relaxed);
        self.samples.switch(2 + w);
        let began = Instant::now();
        self.gate.raise(end);
        self.gate.drain(end);
        let wall_s = began.elapsed().as_secs_f64();
        self.samples.switch(PAUSED);
        self.done = end;
        let after = self.store().stats().expect("stats");
        let (db_bytes, wal_bytes) = self.files.sizes();
        let week = Week {
            week: w + 1,
            days: ((last_hour + 1) as f64 / 24.0 - (w * 7) as f64).min(7.0),
            claims: end - start,
            claims_total: end,
            wall_s,
            commits: after.commits - stats.commits,
            retried: self.gate.retried.load(Ordering::Relaxed) - retried,
            reads: self.samples.get(2 + w),
            ranks_all_rows: self
                .store()
                .ranks_top(Window::All, 0)
                .expect("ranks")
                .ranked,
            rss_kib: measure::rss_kib(),
            db_bytes,
            wal_bytes,
            live_players: after.gauges.live_players,
            block_players: after.gauges.block_players,
            addresses: self.addresses.count(),
            load: loadavg(),
        };
        println!(
            "week {:>2}: {:>9} claims {:>7.0}/s (batch {:>5.0})  p99 blocks {:.2}/{:.2} ranks {:.2}/{:.2} score {:.1}/{:.1} ms  \
             RSS {} MiB  db+wal {} MiB  {} addresses  {} live players  load {:.1}",
            week.week,
            week.claims,
            week.claims_per_s(),
            week.mean_batch(),
            p99_ms(&week, 0),
            p99_ms(&week, 1),
            p99_ms(&week, 2),
            p99_ms(&week, 3),
            p99_ms(&week, 4),
            p99_ms(&week, 5),
            week.rss_kib / 1024,
            (db_bytes + wal_bytes) >> 20,
            week.addresses,
            week.live_players,
            week.load
        );
        week
    }

    /// Checks the store against a recount, closes it, and times a reopen
    /// (tallies, cursors, recent list and live names: no rescan of claims).
    fn finish(&mut self, clock: &Arc<ManualClock>) -> Finish {
        let store = self.store.take().expect("the store is open");
        let started = Instant::now();
        let check = store.check().map_err(|e| e.to_string());
        let check_s = started.elapsed().as_secs_f64();
        let claims_committed = store.stats().expect("stats").claims_committed;
        drop(Arc::into_inner(store).expect("the readers and claimers are gone"));
        let started = Instant::now();
        let reopened = Store::open_with_clock(&self.files.db, clock.clone()).expect("reopening");
        let reopen_s = started.elapsed().as_secs_f64();
        drop(reopened);
        Finish {
            check,
            check_s,
            reopen_s,
            claims_committed,
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("the store is open")
    }
}

fn p99_ms(w: &Week, q: usize) -> f64 {
    report::quantile(&w.reads.reads[q], 0.99) / 1e3
}

fn summary(
    run: &Run,
    weeks: &[Week],
    buckets: &[reads::Bucket],
    rss_base: u64,
    finish: &Finish,
) -> String {
    let (first, last) = (&weeks[0], &weeks[weeks.len() - 1]);
    // The worst weekly p99 of query `q` (of the reads `pick` selects), and its week.
    let worst = |q: usize, pick: fn(&reads::Bucket, usize) -> &Vec<f64>| {
        weeks
            .iter()
            .map(|w| (report::quantile(pick(&w.reads, q), 0.99) / 1e3, w.week))
            .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a })
    };
    let mut s = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "\nyear: {} claims committed over {} simulated days ({} burst hours), {} players",
        finish.claims_committed,
        run.args.days,
        run.traffic.burst_hours(),
        run.args.players
    );
    let _ = writeln!(
        s,
        "claims/s (wall): week 1 {:.0}, week {} {:.0}: {:.0}% of week 1 (target >= 80%)",
        first.claims_per_s(),
        last.week,
        last.claims_per_s(),
        100.0 * last.claims_per_s() / first.claims_per_s()
    );
    let _ = writeln!(
        s,
        "reads before any claim lapsed (hour 1, {} s of wall time):\n{}",
        run.args.calm.as_secs(),
        report::latency_lines(&buckets[0], Kind::All)
    );
    let _ = writeln!(
        s,
        "reads while the hour window slides (hour 2, same pace):\n{}",
        report::latency_lines(&buckets[1], Kind::All)
    );
    let _ = writeln!(
        s,
        "reads in week {} (every window sliding, full claim load):\n{}",
        last.week,
        report::latency_lines(&last.reads, Kind::All)
    );
    let _ = writeln!(
        s,
        "reads right after a commit in week {} (rendered anew):\n{}",
        last.week,
        report::latency_lines(&last.reads, Kind::Fresh)
    );
    for q in 0..4 {
        let (ms, week) = worst(q, |b, q| &b.reads[q]);
        let (alone, alone_week) = worst(q, |b, q| &b.alone[q]);
        let (cpu, cpu_week) = worst(q, |b, q| &b.cpu[q]);
        let _ = writeln!(
            s,
            "worst weekly p99 of {}: {ms:.3} ms (week {week}); of the reads that overlapped \
             no score rendering: {alone:.3} ms (week {alone_week}); of the time on a CPU: \
             {cpu:.3} ms (week {cpu_week}); target <= 1 ms",
            reads::QUERIES[q].0
        );
    }
    for q in 4..6 {
        let (ms, week) = worst(q, |b, q| &b.reads[q]);
        let bytes = weeks.get(week.max(1) - 1).map_or(0, |w| w.reads.bytes[q]);
        let _ = writeln!(
            s,
            "worst weekly p99 of {}: {ms:.1} ms (week {week}, {bytes} bytes); no target, \
             the whole score is rendered (once per version of the data)",
            reads::QUERIES[q].0
        );
    }
    let all: Vec<&reads::Bucket> = weeks.iter().map(|w| &w.reads).collect();
    let _ = writeln!(
        s,
        "where the time of slow reads went, all weeks (waiting for a CPU: the machine was busy; \
         blocked: a lock or the disk):"
    );
    for q in 0..reads::QUERIES.len() {
        s.push_str(&report::slow_line(&all, q));
    }
    let per_address = |w: &Week| w.db_bytes as f64 / w.addresses.max(1) as f64;
    let _ = writeln!(
        s,
        "score size in week {}: hour {} bytes, all {} bytes; ranks (all) has {} rows (the top 100 are read)",
        last.week, last.reads.bytes[4], last.reads.bytes[5], last.ranks_all_rows
    );
    let _ = writeln!(
        s,
        "disk: week {}: database {} MiB for {} addresses ({:.0} bytes/address) after {} claims; \
         week {}: {} MiB for {} addresses ({:.0} bytes/address); the WAL beside it: {} MiB",
        first.week,
        first.db_bytes >> 20,
        first.addresses,
        per_address(first),
        first.claims_total,
        last.week,
        last.db_bytes >> 20,
        last.addresses,
        per_address(last),
        last.wal_bytes >> 20
    );
    let _ = writeln!(
        s,
        "memory: RSS {} MiB before the store opened; week {} {} MiB, week {} {} MiB; live players week {} {}, week {} {}; \
         (block, player) pairs week {} {}, week {} {}",
        rss_base / 1024,
        first.week,
        first.rss_kib / 1024,
        last.week,
        last.rss_kib / 1024,
        first.week,
        first.live_players,
        last.week,
        last.live_players,
        first.week,
        first.block_players,
        last.week,
        last.block_players
    );
    let _ = writeln!(
        s,
        "check(): {} in {:.1} s; reopening the final store took {:.2} s; \
         claims refused as overloaded and made again: {}; load average at the end {:.2}",
        match &finish.check {
            Ok(()) => "passed".to_string(),
            Err(e) => format!("FAILED ({})", e.chars().take(300).collect::<String>()),
        },
        finish.check_s,
        finish.reopen_s,
        weeks.iter().map(|w| w.retried).sum::<u64>(),
        loadavg()
    );
    let _ = writeln!(
        s,
        "simulated time at the end: day {:.1}",
        (run.traffic.time_of(run.done.saturating_sub(1)) - T0) as f64 / DAY as f64
    );
    s
}
