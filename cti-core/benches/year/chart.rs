//! The year's chart: which weekly figures go on which panel.

use crate::reads::Bucket;
use crate::report::{self, Panel, Series, Week};

/// A p99 in ms; NaN (no point) for a week without such reads.
fn p99_ms(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        report::quantile(v, 0.99) / 1e3
    }
}

/// One line: a weekly figure.
fn line(
    weeks: &[Week],
    label: &'static str,
    color: &'static str,
    f: impl Fn(&Week) -> f64,
) -> Series {
    Series {
        label,
        color,
        values: weeks.iter().map(f).collect(),
    }
}

/// The board's four queries: p99 of the reads `pick` selects.
fn board(weeks: &[Week], pick: fn(&Bucket, usize) -> &Vec<f64>) -> Vec<Series> {
    [
        ("blocks hour", "#1f77b4"),
        ("blocks all", "#2ca02c"),
        ("ranks hour", "#ff7f0e"),
        ("ranks all", "#9467bd"),
    ]
    .into_iter()
    .enumerate()
    .map(|(q, (label, color))| line(weeks, label, color, |w| p99_ms(pick(&w.reads, q))))
    .collect()
}

fn panel(
    title: &'static str,
    unit: &'static str,
    series: Vec<Series>,
    target: Option<(f64, &'static str)>,
) -> Panel {
    Panel {
        title,
        unit,
        series,
        target,
    }
}

pub fn year(weeks: &[Week], claims: u64, players: usize) -> String {
    let ms = Some((1.0, "1 ms target"));
    let score_mb = |w: &Week| match w.reads.bytes[5] {
        0 => f64::NAN,
        n => n as f64 / 1e6,
    };
    let mib = |bytes: u64| bytes as f64 / 1048576.0;
    let panels = [
        panel(
            "Durable claims per second (wall)",
            "claims/s",
            vec![line(weeks, "claims/s", "#1f77b4", Week::claims_per_s)],
            None,
        ),
        panel(
            "Read p99, board, every read",
            "ms",
            board(weeks, |b, q| &b.reads[q]),
            ms,
        ),
        panel(
            "Read p99, board, no score rendering meanwhile",
            "ms",
            board(weeks, |b, q| &b.alone[q]),
            ms,
        ),
        panel(
            "Read p99, board, time on a CPU (the read's own cost)",
            "ms",
            board(weeks, |b, q| &b.cpu[q]),
            ms,
        ),
        panel(
            "Read p99, whole score",
            "ms",
            vec![
                line(weeks, "score hour", "#ff7f0e", |w| {
                    p99_ms(&w.reads.reads[4])
                }),
                line(weeks, "score all", "#9467bd", |w| p99_ms(&w.reads.reads[5])),
            ],
            None,
        ),
        panel(
            "Size of score (all window)",
            "MB",
            vec![line(weeks, "score all", "#9467bd", score_mb)],
            None,
        ),
        panel(
            "Memory and disk",
            "MiB",
            vec![
                line(weeks, "RSS", "#d62728", |w| w.rss_kib as f64 / 1024.0),
                line(weeks, "database", "#1f77b4", |w| mib(w.db_bytes)),
                line(weeks, "WAL", "#7f7f7f", |w| mib(w.wal_bytes)),
            ],
            None,
        ),
        panel(
            "Addresses stored, live players",
            "millions",
            vec![
                line(weeks, "addresses", "#1f77b4", |w| w.addresses as f64 / 1e6),
                line(weeks, "live players", "#2ca02c", |w| {
                    w.live_players as f64 / 1e6
                }),
            ],
            None,
        ),
    ];
    report::svg(
        &format!(
            "cti: a simulated year, {}M claims, {players} players (cargo bench --bench year)",
            claims as f64 / 1e6
        ),
        &panels,
    )
}
