//! A strict reader of Prometheus's text exposition format (0.0.4): enough
//! to reject what a scraper would, and to read series back by name and
//! labels.

use std::collections::{BTreeMap, HashMap};

/// One series: its metric name and its labels, sorted.
pub type SeriesKey = (String, BTreeMap<String, String>);

#[derive(Debug, Default)]
pub struct Exposition {
    pub types: HashMap<String, String>,
    pub helps: HashMap<String, String>,
    pub samples: BTreeMap<String, f64>,
    pub keys: Vec<SeriesKey>,
}

impl Exposition {
    /// The value of the series `name{labels}` (labels in any order).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples.get(&render_key(name, labels)).copied()
    }

    /// Like `value`, 0 for a series not (yet) present.
    pub fn value_or_zero(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels).unwrap_or(0.0)
    }

    /// Every label set under `name`.
    pub fn label_sets(&self, name: &str) -> Vec<&BTreeMap<String, String>> {
        self.keys
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, l)| l)
            .collect()
    }
}

fn render_key(name: &str, labels: &[(&str, &str)]) -> String {
    let sorted: BTreeMap<&str, &str> = labels.iter().copied().collect();
    let inner: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|e| format!("value `{s}`: {e}")),
    }
}

/// `{a="x",b="y"}` (the braces included) at the start of `s`: the labels
/// and the rest of the line.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s.strip_prefix('{').ok_or("labels must open with `{`")?;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("a label without `=`")?;
        let name = &rest[..eq];
        if !is_label_name(name) {
            return Err(format!("label name `{name}`"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("a label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) => return Err("a raw newline in a label value".into()),
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value".into()),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label `{name}` twice"));
        }
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("expected `,` or `}}` at `{rest}`"));
        }
    }
}

/// The family a sample belongs to: a histogram's `_bucket`, `_sum` and
/// `_count` belong to the histogram.
fn family_of<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && matches!(types.get(base).map(String::as_str), Some("histogram" | "summary"))
        {
            return base;
        }
    }
    name
}

/// Parses `text`, failing on anything a Prometheus server would refuse:
/// a malformed line, a sample before its family's TYPE, a TYPE after its
/// samples or twice, a series twice, or a histogram whose buckets are not
/// cumulative or whose `+Inf` bucket is not its count.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut seen_samples_of: std::collections::HashSet<String> = Default::default();
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: `{line}`", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !is_metric_name(name) {
                        return Err(at(format!("metric name `{name}`")));
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        return Err(at(format!("type `{kind}`")));
                    }
                    if seen_samples_of.contains(name) {
                        return Err(at("TYPE after the family's samples".into()));
                    }
                    if out.types.insert(name.to_string(), kind.to_string()).is_some() {
                        return Err(at("TYPE twice".into()));
                    }
                }
                (Some("HELP"), Some(name), help) => {
                    if !is_metric_name(name) {
                        return Err(at(format!("metric name `{name}`")));
                    }
                    out.helps.insert(name.to_string(), help.unwrap_or("").to_string());
                }
                // Any other comment is allowed by the format.
                _ => {}
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| at("a sample without a value".into()))?;
        let name = &line[..name_end];
        if !is_metric_name(name) {
            return Err(at(format!("metric name `{name}`")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("no space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value = parse_value(fields.next().unwrap_or("")).map_err(at)?;
        if let Some(ts) = fields.next() {
            ts.parse::<i64>().map_err(|e| at(format!("timestamp: {e}")))?;
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let family = family_of(name, &out.types);
        if !out.types.contains_key(family) {
            return Err(at(format!("a sample of `{family}` before its TYPE")));
        }
        seen_samples_of.insert(family.to_string());
        let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let key = render_key(name, &pairs);
        if out.samples.insert(key, value).is_some() {
            return Err(at("the same series twice".into()));
        }
        out.keys.push((name.to_string(), labels));
    }
    check_histograms(&out)?;
    Ok(out)
}

fn check_histograms(out: &Exposition) -> Result<(), String> {
    for (family, kind) in &out.types {
        if kind != "histogram" {
            continue;
        }
        // Buckets per label set (without `le`).
        let mut groups: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for (name, labels) in &out.keys {
            if name != &format!("{family}_bucket") {
                continue;
            }
            let le = labels
                .get("le")
                .ok_or(format!("{family}: a bucket without `le`"))?;
            let le = parse_value(le)?;
            let mut rest = labels.clone();
            rest.remove("le");
            let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let count = out.samples[&render_key(name, &pairs)];
            groups.entry(rest).or_default().push((le, count));
        }
        for (labels, mut buckets) in groups {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!(
                    "{family}{labels:?}: buckets are not cumulative: {buckets:?}"
                ));
            }
            let (last_le, last_count) = *buckets.last().unwrap();
            if last_le != f64::INFINITY {
                return Err(format!("{family}{labels:?}: no +Inf bucket"));
            }
            let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let count = out
                .value(&format!("{family}_count"), &pairs)
                .ok_or(format!("{family}{labels:?}: no _count"))?;
            if count != last_count {
                return Err(format!(
                    "{family}{labels:?}: +Inf bucket {last_count} != count {count}"
                ));
            }
            if out.value(&format!("{family}_sum"), &pairs).is_none() {
                return Err(format!("{family}{labels:?}: no _sum"));
            }
        }
    }
    Ok(())
}

#[test]
fn the_reader_refuses_what_prometheus_refuses() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\",y=\"q\\\"\"} 3\n\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 3.5\nh_count 2\n";
    let read = parse(good).unwrap();
    assert_eq!(read.value("a_total", &[("y", "q\""), ("x", "1")]), Some(3.0));
    assert_eq!(read.value("h_count", &[]), Some(2.0));
    for bad in [
        "a_total 1\n",                               // no TYPE
        "# TYPE a counter\na{x=1} 1\n",              // unquoted
        "# TYPE a counter\na 1\na 2\n",              // twice
        "# TYPE a counter\na one\n",                 // value
        "# TYPE a counter\na{x=\"1\"}1\n",           // no space
        "# TYPE 1a counter\n",                       // name
        "# TYPE a counter\na 1\n# TYPE a counter\n", // TYPE after samples
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n", // not cumulative
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",                       // count
        "# TYPE a counter\na{x=\"1\",x=\"2\"} 1\n", // label twice
    ] {
        assert!(parse(bad).is_err(), "accepted: {bad}");
    }
}
