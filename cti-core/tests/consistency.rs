//! Randomized: the store against a plain model of the rules, and the stored
//! aggregates against a recount of the claims table — after every step, after
//! reopening, and after a SIGKILL in the middle of committing.

mod common;

use cti_core::{ManualClock, Store, Window};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A small deterministic generator (xorshift), so failures replay from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The rules, written the slow and obvious way.
#[derive(Default)]
struct Model {
    owner: HashMap<u32, (String, i64)>,
}

/// An owner's repeat claim younger than this changes nothing.
const REFRESH_AFTER: i64 = 3_600_000_000;

impl Model {
    fn claim(&mut self, ip: u32, nick: &str, now: i64) {
        match self.owner.get(&ip) {
            Some((owner, at)) if owner == nick && now - at < REFRESH_AFTER => {}
            _ => {
                self.owner.insert(ip, (nick.to_string(), now));
            }
        }
    }

    fn holders(&self, w: Window, now: i64) -> common::Holders {
        common::recount(&self.owner, w, now)
    }
}

#[test]
fn store_matches_model_across_windows_and_reopens() {
    for seed in [1u64, 7, 42, 1234] {
        run_model(seed, 800);
    }
}

fn run_model(seed: u64, steps: usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.db");
    let clock = Arc::new(ManualClock::new(1_700_000_000_000_000));
    let open = || common::open_unlimited(&path, &clock);
    let mut store = open();
    let mut model = Model::default();
    let nicks = ["a", "b", "C", "dd"];
    // Steps in time that straddle every window edge over the run.
    let steps_us: [i64; 6] = [
        1,
        1_000_000,
        600_000_000,
        3_600_000_000,
        86_400_000_000,
        2_592_000_000_000,
    ];
    for step in 0..steps {
        match rng.below(10) {
            0 => clock.advance(steps_us[rng.below(steps_us.len() as u64) as usize]),
            1 if step % 7 == 0 => {
                drop(store);
                store = open();
            }
            _ => {
                // Few blocks and few addresses, so steals and ties are frequent.
                let ip = ((rng.below(3) as u32 + 1) << 24) | rng.below(6) as u32;
                let nick = nicks[rng.below(nicks.len() as u64) as usize];
                let claimed = store
                    .claim(&std::net::Ipv4Addr::from(ip).to_string(), nick)
                    .unwrap();
                model.claim(ip, nick, clock.now_for_test());
                assert_eq!(claimed.at, model.owner[&ip].1, "seed {seed} step {step}");
            }
        }
        let now = clock.now_for_test();
        if step % 2 == 1 {
            // A server's read of one window slides that window alone, so
            // the next claim finds the windows at different times.
            let w = Window::EVERY[rng.below(Window::EVERY.len() as u64) as usize];
            assert_eq!(
                common::holders_rendered(&store, w),
                model.holders(w, now),
                "seed {seed} step {step} window {} alone",
                w.name()
            );
            continue;
        }
        for w in Window::EVERY {
            assert_eq!(
                common::holders(&store, w),
                model.holders(w, now),
                "seed {seed} step {step} window {}",
                w.name()
            );
        }
        store
            .check()
            .unwrap_or_else(|e| panic!("seed {seed} step {step}: {e}"));
    }
}

trait NowForTest {
    fn now_for_test(&self) -> i64;
}

impl NowForTest for ManualClock {
    fn now_for_test(&self) -> i64 {
        cti_core::Clock::now(self)
    }
}

const CHILD_ENV: &str = "CTI_CRASH_CHILD_DB";

/// Run by `sigkill_mid_commit_loses_no_acknowledged_claim` in a child process:
/// claims fresh addresses from 8 threads and prints each one once it is committed.
#[test]
#[ignore = "child process of the crash test"]
fn crash_child() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let start: u32 = std::env::var("CTI_CRASH_CHILD_START")
        .unwrap()
        .parse()
        .unwrap();
    let store = Arc::new(Store::open(std::path::Path::new(&path)).unwrap());
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let (store, out) = (store.clone(), out.clone());
            std::thread::spawn(move || {
                for i in 0..200_000u32 {
                    let ip = std::net::Ipv4Addr::from(start.wrapping_add(i * 8 + t));
                    let nick = format!("p{}", i % 5);
                    if store.claim(&ip.to_string(), &nick).is_ok() {
                        let mut o = out.lock().unwrap();
                        writeln!(o, "ACK {ip} {nick}").unwrap();
                        o.flush().unwrap();
                    }
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
}

#[test]
fn sigkill_mid_commit_loses_no_acknowledged_claim() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let mut rng = Rng(0xC0FFEE);
    let mut acked: Vec<(String, String)> = Vec::new();
    for cycle in 0..8u32 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .env("CTI_CRASH_CHILD_START", ((cycle + 1) << 24).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Some((ip, nick)) = line.strip_prefix("ACK ").and_then(|r| r.split_once(' '))
                else {
                    continue;
                };
                let _ = tx.send((ip.to_string(), nick.to_string()));
            }
        });
        // Once it commits, let it go on for a while, then kill it at a random moment.
        let first = rx.recv_timeout(Duration::from_secs(60));
        assert!(first.is_ok(), "child acknowledged nothing in cycle {cycle}");
        let deadline = Instant::now() + Duration::from_millis(150 + rng.below(400));
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let got: Vec<_> = first.into_iter().chain(rx.try_iter()).collect();
        acked.extend(got);

        let store = Store::open(&path).unwrap();
        store
            .check()
            .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        // Every acknowledged claim is there (addresses are fresh, so nobody stole them).
        let owners = test_kit::sqlite::owners(&path);
        let lost: Vec<_> = acked
            .iter()
            .filter(|(ip, nick)| owners.get(ip) != Some(nick))
            .collect();
        assert!(
            lost.is_empty(),
            "cycle {cycle}: {} acknowledged claims lost, e.g. {:?}",
            lost.len(),
            lost.first()
        );
    }
    assert!(
        acked.len() > 100,
        "only {} claims acknowledged in all",
        acked.len()
    );
    println!(
        "crash test: {} acknowledged claims over 8 SIGKILL cycles, 0 lost",
        acked.len()
    );
}
