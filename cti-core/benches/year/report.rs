//! What the bench writes: one CSV row per simulated week, the two calm
//! first hours, an SVG chart, and the summary.

use crate::reads::{Bucket, Split, QUERIES, SLOW_US};
use std::fmt::Write as _;

/// One simulated week, measured.
pub struct Week {
    pub week: usize,
    /// Simulated days it covers (the last week may be short).
    pub days: f64,
    pub claims: u64,
    pub claims_total: u64,
    /// Wall time the week's claims took.
    pub wall_s: f64,
    pub commits: u64,
    pub retried: u64,
    pub reads: Bucket,
    pub ranks_all_rows: usize,
    pub rss_kib: u64,
    pub db_bytes: u64,
    pub wal_bytes: u64,
    pub live_players: u64,
    pub block_players: u64,
    pub addresses: u64,
    /// One-minute load average of the machine at the week's end.
    pub load: f64,
}

impl Week {
    pub fn claims_per_s(&self) -> f64 {
        self.claims as f64 / self.wall_s.max(1e-9)
    }

    pub fn mean_batch(&self) -> f64 {
        self.claims as f64 / self.commits.max(1) as f64
    }
}

/// The `q`-quantile (nearest rank) of `v`, in microseconds; 0 when empty.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[((q * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
}

fn latency_header(prefix: &str) -> String {
    let mut h = String::new();
    for (q, _) in QUERIES {
        write!(
            h,
            ",{prefix}{q}_p50_us,{prefix}{q}_p99_us,{prefix}{q}_max_us,{prefix}{q}_reads,\
             {prefix}{q}_cached_share,{prefix}{q}_alone_p99_us,{prefix}{q}_alone_reads,\
             {prefix}{q}_fresh_p50_us,{prefix}{q}_fresh_p99_us,{prefix}{q}_fresh_reads,\
             {prefix}{q}_cpu_p50_us,{prefix}{q}_cpu_p99_us,{prefix}{q}_slow_reads,{prefix}{q}_slow_cpu_us,{prefix}{q}_slow_queued_us,\
             {prefix}{q}_slow_blocked_us"
        )
        .unwrap();
    }
    h
}

fn latency_cells(b: &Bucket) -> String {
    let mut c = String::new();
    for q in 0..QUERIES.len() {
        let (r, a, f) = (&b.reads[q], &b.alone[q], &b.fresh[q]);
        let cached = b.hits[q] as f64 / r.len().max(1) as f64;
        let slow = &b.slow[q];
        write!(
            c,
            ",{:.0},{:.0},{:.0},{},{:.3},{:.0},{},{:.0},{:.0},{},{:.0},{:.0},{},{:.0},{:.0},{:.0}",
            quantile(r, 0.5),
            quantile(r, 0.99),
            quantile(r, 1.0),
            r.len(),
            cached,
            quantile(a, 0.99),
            a.len(),
            quantile(f, 0.5),
            quantile(f, 0.99),
            f.len(),
            quantile(&b.cpu[q], 0.5),
            quantile(&b.cpu[q], 0.99),
            slow.reads,
            slow.cpu_us,
            slow.queued_us,
            slow.blocked_us
        )
        .unwrap();
    }
    c
}

/// Where the slow reads of query `q` went, summed over `buckets`: one line.
pub fn slow_line(buckets: &[&Bucket], q: usize) -> String {
    let mut t = Split::default();
    let mut reads = 0;
    for b in buckets {
        let s = &b.slow[q];
        t.reads += s.reads;
        t.cpu_us += s.cpu_us;
        t.queued_us += s.queued_us;
        t.blocked_us += s.blocked_us;
        reads += b.reads[q].len();
    }
    let total = (t.cpu_us + t.queued_us + t.blocked_us).max(1e-9);
    format!(
        "    {:<12} {} of {reads} reads over {} ms: {:.0}% on a CPU, {:.0}% waiting for a CPU, {:.0}% blocked\n",
        QUERIES[q].0,
        t.reads,
        SLOW_US / 1e3,
        100.0 * t.cpu_us / total,
        100.0 * t.queued_us / total,
        100.0 * t.blocked_us / total
    )
}

pub fn weeks_csv(weeks: &[Week]) -> String {
    let mut out = format!(
        "week,days,claims,claims_total,wall_s,claims_per_s,mean_batch,retried{},\
         score_hour_bytes,score_all_bytes,ranks_all_rows,rss_kib,db_bytes,wal_bytes,\
         live_players,block_players,addresses,db_bytes_per_address,load1\n",
        latency_header("")
    );
    for w in weeks {
        writeln!(
            out,
            "{},{:.2},{},{},{:.2},{:.0},{:.1},{}{},{},{},{},{},{},{},{},{},{},{:.1},{:.2}",
            w.week,
            w.days,
            w.claims,
            w.claims_total,
            w.wall_s,
            w.claims_per_s(),
            w.mean_batch(),
            w.retried,
            latency_cells(&w.reads),
            w.reads.bytes[4],
            w.reads.bytes[5],
            w.ranks_all_rows,
            w.rss_kib,
            w.db_bytes,
            w.wal_bytes,
            w.live_players,
            w.block_players,
            w.addresses,
            w.db_bytes as f64 / w.addresses.max(1) as f64,
            w.load
        )
        .unwrap();
    }
    out
}

/// The calm first hours: before any claim lapsed, and while the hour window
/// slides, at the same pace.
pub fn first_hours_csv(no_lapse: &Bucket, sliding: &Bucket, claims: [u64; 2]) -> String {
    let mut out = format!("phase,claims{}\n", latency_header(""));
    for (name, b, n) in [
        ("hour1_no_claim_lapsed", no_lapse, claims[0]),
        ("hour2_hour_window_sliding", sliding, claims[1]),
    ] {
        writeln!(out, "{name},{n}{}", latency_cells(b)).unwrap();
    }
    out
}

/// Which reads of a bucket a summary line shows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every read under load.
    All,
    /// Reads right after the reader's own commit.
    Fresh,
}

/// p50 / p99 / max of every query, in ms, on one line each; for reads under
/// load, the p99 of those that overlapped no `score` rendering too.
pub fn latency_lines(b: &Bucket, kind: Kind) -> String {
    let mut out = String::new();
    for (q, (name, _)) in QUERIES.iter().enumerate() {
        let v = if kind == Kind::Fresh {
            &b.fresh[q]
        } else {
            &b.reads[q]
        };
        write!(
            out,
            "    {name:<12} p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms  ({} reads",
            quantile(v, 0.5) / 1e3,
            quantile(v, 0.99) / 1e3,
            quantile(v, 1.0) / 1e3,
            v.len()
        )
        .unwrap();
        let alone = &b.alone[q];
        if kind == Kind::All && !alone.is_empty() && alone.len() < v.len() {
            write!(
                out,
                "; p99 {:.3} ms of the {} with no score rendering meanwhile",
                quantile(alone, 0.99) / 1e3,
                alone.len()
            )
            .unwrap();
        }
        out.push_str(")\n");
    }
    out
}

/// A series of a chart panel.
pub struct Series {
    pub label: &'static str,
    pub color: &'static str,
    pub values: Vec<f64>,
}

/// A panel: a title, a unit, its series, and a target line.
pub struct Panel {
    pub title: &'static str,
    pub unit: &'static str,
    pub series: Vec<Series>,
    pub target: Option<(f64, &'static str)>,
}

const PANEL_W: f64 = 460.0;
const PANEL_H: f64 = 230.0;
const MARGIN: (f64, f64, f64, f64) = (58.0, 16.0, 34.0, 40.0); // left, right, top, bottom
const COLUMNS: usize = 2;

/// A hand-made SVG: panels in two columns, weeks on every x axis.
pub fn svg(title: &str, panels: &[Panel]) -> String {
    let rows = panels.len().div_ceil(COLUMNS);
    let (w, h) = (PANEL_W * COLUMNS as f64, 40.0 + PANEL_H * rows as f64);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" font-size=\"15\" text-anchor=\"middle\">{}</text>\n",
        w / 2.0,
        escape(title)
    );
    for (i, p) in panels.iter().enumerate() {
        let (x, y) = (
            (i % COLUMNS) as f64 * PANEL_W,
            40.0 + (i / COLUMNS) as f64 * PANEL_H,
        );
        panel(&mut s, p, x, y);
    }
    s.push_str("</svg>\n");
    s
}

fn panel(s: &mut String, p: &Panel, x0: f64, y0: f64) {
    let (l, r, t, b) = MARGIN;
    let (pw, ph) = (PANEL_W - l - r, PANEL_H - t - b);
    let n = p.series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let top = p
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .chain(p.target.map(|t| t.0))
        .fold(0.0, f64::max);
    let (step, ymax) = nice_axis(top);
    let px = |i: usize| x0 + l + pw * i as f64 / (n.max(2) - 1) as f64;
    let py = |v: f64| y0 + t + ph * (1.0 - v / ymax);
    writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\" font-weight=\"bold\">{} ({})</text>",
        x0 + l,
        y0 + t - 16.0,
        escape(p.title),
        escape(p.unit)
    )
    .unwrap();
    let mut v = 0.0;
    while v <= ymax * 1.0001 {
        writeln!(
            s,
            "<line x1=\"{}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x0 + l,
            x0 + l + pw,
            x0 + l - 4.0,
            py(v) + 4.0,
            tick_label(v, step),
            y = py(v)
        )
        .unwrap();
        v += step;
    }
    for week in (1..=n).filter(|w| *w == 1 || w % 4 == 0 || *w == n) {
        writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{week}</text>",
            px(week - 1),
            y0 + t + ph + 14.0
        )
        .unwrap();
    }
    writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">week</text>",
        x0 + l + pw / 2.0,
        y0 + t + ph + 28.0
    )
    .unwrap();
    if let Some((v, label)) = p.target {
        writeln!(
            s,
            "<line x1=\"{}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#c00\" \
             stroke-dasharray=\"5 4\"/><text x=\"{}\" y=\"{:.1}\" fill=\"#c00\" \
             text-anchor=\"end\">{}</text>",
            x0 + l,
            x0 + l + pw,
            x0 + l + pw,
            py(v) - 4.0,
            escape(label),
            y = py(v)
        )
        .unwrap();
    }
    for (k, series) in p.series.iter().enumerate() {
        // Weeks without a sample (NaN) are left out of the line.
        let points: Vec<String> = series
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| format!("{:.1},{:.1}", px(i), py(*v)))
            .collect();
        let (lx, ly) = (
            x0 + l + 8.0 + (k % 3) as f64 * 130.0,
            y0 + t + 6.0 + (k / 3) as f64 * 14.0,
        );
        writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"1.8\" points=\"{}\"/>\
             <rect x=\"{lx}\" y=\"{ly}\" width=\"10\" height=\"3\" fill=\"{c}\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            points.join(" "),
            lx + 14.0,
            ly + 4.0,
            escape(series.label),
            c = series.color,
        )
        .unwrap();
    }
}

/// A tick step of 1, 2 or 5 times a power of ten, and the axis top.
fn nice_axis(top: f64) -> (f64, f64) {
    let top = if top > 0.0 { top } else { 1.0 };
    let raw = top / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    (step, (top / step).ceil() * step)
}

fn tick_label(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else {
        let digits = (-step.log10().floor()) as usize;
        format!("{v:.digits$}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
