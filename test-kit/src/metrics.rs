//! A Prometheus metrics listener read as a scraper reads it: the text
//! exposition (format 0.0.4) parsed into families and samples, refused when
//! it breaks the format or the conventions the binaries keep (every sample
//! under a `# TYPE`d family, counters named `_total`, one set of label names
//! per family, histogram buckets that never go down and end at `+Inf`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Label names and values of one sample.
pub type Labels = BTreeMap<String, String>;

/// One `# TYPE` (with its `# HELP`).
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub kind: String,
    pub help: String,
    /// The label names of its samples (`le` of histogram buckets aside).
    pub label_names: Option<BTreeSet<String>>,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub families: BTreeMap<String, Family>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    pub fn parse(text: &str) -> Result<Exposition, String> {
        let mut out = Exposition::default();
        let mut help: BTreeMap<String, String> = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
                help.insert(name.to_string(), text.to_string());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                out.declare(rest, &mut help).map_err(at)?;
            } else if !line.is_empty() && !line.starts_with('#') {
                let sample = parse_sample(line).map_err(at)?;
                out.admit(sample).map_err(at)?;
            }
        }
        out.check_histograms()?;
        Ok(out)
    }

    fn declare(&mut self, rest: &str, help: &mut BTreeMap<String, String>) -> Result<(), String> {
        let (name, kind) = rest.split_once(' ').ok_or("no type")?;
        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
            return Err(format!("unknown type {kind}"));
        }
        if kind == "counter" && !name.ends_with("_total") {
            return Err(format!("counter {name} not named _total"));
        }
        let help = help.remove(name).ok_or("no # HELP before # TYPE")?;
        let family = Family {
            kind: kind.to_string(),
            help,
            label_names: None,
        };
        match self.families.insert(name.to_string(), family) {
            Some(_) => Err(format!("{name} declared twice")),
            None => Ok(()),
        }
    }

    /// Files `sample` under its family, whose label names it must share.
    fn admit(&mut self, sample: Sample) -> Result<(), String> {
        let (family_name, bucket) = self.family_of(&sample.name)?;
        let mut names: BTreeSet<String> = sample.labels.keys().cloned().collect();
        if bucket && !names.remove("le") {
            return Err("a bucket without le".into());
        }
        let family = self.families.get_mut(&family_name).ok_or("no family")?;
        match &family.label_names {
            Some(seen) if *seen != names => {
                return Err(format!("labels {names:?} where {family_name} has {seen:?}"))
            }
            _ => family.label_names = Some(names),
        }
        self.samples.push(sample);
        Ok(())
    }

    /// The family a sample name belongs to, and whether it is a bucket.
    fn family_of(&self, name: &str) -> Result<(String, bool), String> {
        if self.families.contains_key(name) {
            return Ok((name.to_string(), false));
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if self
                    .families
                    .get(base)
                    .is_some_and(|f| f.kind == "histogram")
                {
                    return Ok((base.to_string(), suffix == "_bucket"));
                }
            }
        }
        Err(format!("{name} has no # TYPE before it"))
    }

    /// Buckets cumulative, the last `+Inf` and equal to `_count`.
    fn check_histograms(&self) -> Result<(), String> {
        for (name, _) in self.families.iter().filter(|(_, f)| f.kind == "histogram") {
            let buckets = self.buckets(name);
            let last = buckets.last().ok_or(format!("{name}: no buckets"))?;
            let count = self.value(&format!("{name}_count")).ok_or("no _count")?;
            if last.0 != f64::INFINITY || last.1 != count {
                return Err(format!("{name}: last bucket {last:?}, count {count}"));
            }
            if buckets
                .windows(2)
                .any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1)
            {
                return Err(format!("{name}: buckets not cumulative: {buckets:?}"));
            }
        }
        Ok(())
    }

    /// `(le, count)` of the histogram `name`, in order of the text.
    pub fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        self.samples
            .iter()
            .filter(|s| s.name == bucket)
            .map(|s| (parse_value(&s.labels["le"]).unwrap_or(f64::NAN), s.value))
            .collect()
    }

    /// The value of the sample `selector`: a name with exactly the labels
    /// written, as in `cti_http_requests_total{route="claim",status="200"}`.
    pub fn value(&self, selector: &str) -> Option<f64> {
        let (name, labels) = parse_series(selector).ok()?;
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .map(|s| s.value)
    }

    /// As [`Exposition::value`], 0 when the series is not there (yet).
    pub fn count(&self, selector: &str) -> f64 {
        self.value(selector).unwrap_or(0.0)
    }

    /// The samples of the family or sample name `name`.
    pub fn samples_of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }
}

/// `name{labels} value` (timestamps are not used by the binaries).
fn parse_sample(line: &str) -> Result<Sample, String> {
    let split = match line.find('{') {
        Some(_) => line.rfind('}').map(|i| i + 1),
        None => line.find(' '),
    };
    let split = split.ok_or("no value")?;
    let (series, value) = line.split_at(split);
    let (name, labels) = parse_series(series)?;
    let value = value.strip_prefix(' ').ok_or("no space before the value")?;
    Ok(Sample {
        name,
        labels,
        value: parse_value(value)?,
    })
}

fn parse_value(v: &str) -> Result<f64, String> {
    match v {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        v => v.parse().map_err(|e| format!("value {v:?}: {e}")),
    }
}

/// `name` or `name{k="v",...}` with `\\`, `\"` and `\n` escapes in values.
fn parse_series(series: &str) -> Result<(String, Labels), String> {
    let (name, rest) = match series.split_once('{') {
        Some((name, rest)) => (name, Some(rest.strip_suffix('}').ok_or("no closing }")?)),
        None => (series, None),
    };
    let valid = |s: &str, colon: bool| {
        s.chars().enumerate().all(|(i, c)| {
            c == '_'
                || c.is_ascii_alphabetic()
                || (colon && c == ':')
                || (i > 0 && c.is_ascii_digit())
        }) && !s.is_empty()
    };
    if !valid(name, true) {
        return Err(format!("bad name {name:?}"));
    }
    let mut labels = Labels::new();
    let mut chars = rest.unwrap_or_default().chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if !valid(&key, false) {
            return Err(format!("bad label name {key:?}"));
        }
        if chars.next() != Some('"') {
            return Err(format!("label {key} not quoted"));
        }
        let mut value = String::new();
        loop {
            match chars.next().ok_or("unterminated label value")? {
                '"' => break,
                '\\' => value.push(match chars.next() {
                    Some('\\') => '\\',
                    Some('"') => '"',
                    Some('n') => '\n',
                    c => return Err(format!("bad escape {c:?}")),
                }),
                c => value.push(c),
            }
        }
        if labels.insert(key.clone(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        match chars.next() {
            None | Some(',') => {}
            Some(c) => return Err(format!("{c:?} after a label value")),
        }
    }
    Ok((name.to_string(), labels))
}

/// The exposition at `GET /metrics`, checked (content type included).
pub fn scrape(metrics: SocketAddr) -> Exposition {
    let reply = crate::http::get(metrics, "/metrics", &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let kind = reply.header("content-type").unwrap_or_default();
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    let text = reply.text();
    Exposition::parse(&text).unwrap_or_else(|e| panic!("{e} in:\n{text}"))
}

/// The whole text at `GET /metrics`.
pub fn text(metrics: SocketAddr) -> String {
    let reply = crate::http::get(metrics, "/metrics", &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.text()
}

/// The value of the sample `selector` (a name with its labels, as in
/// [`Exposition::value`]) at `metrics`: a whole number.
pub fn metric(metrics: SocketAddr, selector: &str) -> u64 {
    let exposition = scrape(metrics);
    let value = exposition
        .value(selector)
        .unwrap_or_else(|| panic!("no {selector} in {exposition:#?}"));
    assert!(
        value >= 0.0 && value.fract() == 0.0,
        "{selector} is {value}"
    );
    value as u64
}

/// Waits (bounded by `limit`) until the metric `name` reads `want`;
/// returns how long that took.
pub fn metric_becomes(metrics: SocketAddr, name: &str, want: u64, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let now = metric(metrics, name);
        if now == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{name} is {now} after {limit:?}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "# HELP a_total Things.\n# TYPE a_total counter\n\
        a_total{k=\"x\\\"y\\\\z\\n\",j=\"2\"} 3\na_total{k=\"w\",j=\"1\"} 4\n\
        # HELP d_seconds Time.\n# TYPE d_seconds histogram\n\
        d_seconds_bucket{le=\"0.5\"} 1\nd_seconds_bucket{le=\"+Inf\"} 2\n\
        d_seconds_sum 0.75\nd_seconds_count 2\n";

    #[test]
    fn reads_samples_labels_and_escapes() {
        let e = Exposition::parse(GOOD).unwrap();
        assert_eq!(e.value("a_total{j=\"1\",k=\"w\"}"), Some(4.0));
        assert_eq!(e.value("a_total{k=\"x\\\"y\\\\z\\n\",j=\"2\"}"), Some(3.0));
        assert_eq!(e.value("a_total{k=\"w\"}"), None, "labels match exactly");
        assert_eq!(e.buckets("d_seconds"), [(0.5, 1.0), (f64::INFINITY, 2.0)]);
        assert_eq!(e.value("d_seconds_sum"), Some(0.75));
        assert_eq!(e.families["d_seconds"].help, "Time.");
        let names = e.families["a_total"].label_names.clone().unwrap();
        assert_eq!(names, ["j", "k"].map(String::from).into());
    }

    #[test]
    fn refuses_what_breaks_the_format_or_the_conventions() {
        for (bad, why) in [
            ("a_total 1\n", "no # TYPE"),
            ("# HELP a Things.\n# TYPE a counter\na 1\n", "counter without _total"),
            ("# TYPE a gauge\na 1\n", "no help"),
            (
                "# HELP a_total T.\n# TYPE a_total counter\na_total{k=\"1\"} 1\na_total{j=\"1\"} 1\n",
                "two label sets",
            ),
            ("# HELP a T.\n# TYPE a gauge\na{k=\"1} 1\n", "unterminated"),
            ("# HELP a T.\n# TYPE a gauge\na{k=1} 1\n", "unquoted"),
            ("# HELP a T.\n# TYPE a gauge\na one\n", "value"),
            (
                "# HELP h T.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
                "buckets going down",
            ),
            (
                "# HELP h T.\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
                "no +Inf",
            ),
        ] {
            assert!(Exposition::parse(bad).is_err(), "{why}: {bad}");
        }
    }
}
