//! A window's latency histogram cut into buckets a panel can draw: on a
//! log scale with round boundaries (1-2-5 per decade, or finer when the
//! panel has room), or on a linear scale between p1 and p99.9 for tight
//! distributions. Computed from the window's merged HdrHistogram, so the
//! buckets count exactly the requests of the window.

use hdrhistogram::Histogram;

/// How the buckets are laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scale {
    /// Round boundaries, each a constant factor above the last.
    #[default]
    Log,
    /// Equal, round widths from p1 to p99.9 (oha's style); what lies
    /// outside is counted apart.
    Linear,
}

impl Scale {
    pub fn toggled(self) -> Scale {
        match self {
            Scale::Log => Scale::Linear,
            Scale::Linear => Scale::Log,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Scale::Log => "log scale",
            Scale::Linear => "linear p1–p99.9",
        }
    }
}

/// Requests whose latency (µs) is in `[lower_us, upper_us)`; the last
/// bucket also holds `upper_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatencyBucket {
    pub lower_us: u64,
    pub upper_us: u64,
    pub count: u64,
}

/// What a latency panel draws, all over one window.
#[derive(Clone, Debug, PartialEq)]
pub struct Distribution {
    pub scale: Scale,
    pub buckets: Vec<LatencyBucket>,
    /// Linear scale: requests faster than the first bucket, slower than the
    /// last. Buckets, `below` and `above` add up to `total`.
    pub below: u64,
    pub above: u64,
    pub total: u64,
    pub min: u64,
    pub max: u64,
    /// p50, p90 and p99, exact to the histogram's precision.
    pub quantiles: [u64; 3],
}

impl Distribution {
    /// The bucket that holds `micros`.
    pub fn bucket_of(&self, micros: u64) -> Option<usize> {
        let last = self.buckets.len().checked_sub(1)?;
        self.buckets
            .iter()
            .position(|b| micros >= b.lower_us && micros < b.upper_us)
            .or_else(|| (micros == self.buckets[last].upper_us).then_some(last))
    }
}

/// Boundaries per decade (10 = 1×), coarsest first: the finest that fits
/// is used.
const SERIES: [&[u64]; 3] = [
    &[10, 20, 50],
    &[10, 15, 20, 30, 50, 70],
    &[10, 12, 15, 20, 25, 30, 40, 50, 60, 80],
];

/// `histogram` in at most `max_buckets` buckets (at least one); `None`
/// when it is empty.
pub fn distribution(
    histogram: &Histogram<u64>,
    scale: Scale,
    max_buckets: usize,
) -> Option<Distribution> {
    if histogram.is_empty() {
        return None;
    }
    let max_buckets = max_buckets.max(1);
    let (min, max) = (histogram.min(), histogram.max());
    let edges = match scale {
        Scale::Log => log_edges(min, max, max_buckets),
        Scale::Linear => linear_edges(
            histogram.value_at_quantile(0.01),
            histogram.value_at_quantile(0.999),
            max_buckets,
        ),
    };
    let mut buckets: Vec<LatencyBucket> = edges
        .windows(2)
        .map(|pair| LatencyBucket {
            lower_us: pair[0],
            upper_us: pair[1],
            count: 0,
        })
        .collect();
    let (mut below, mut above) = (0u64, 0u64);
    let (first, last) = (edges[0], edges[edges.len() - 1]);
    for recorded in histogram.iter_recorded() {
        // The value quantiles report for these requests: a marker lands in
        // the bucket its requests were counted in.
        let value = recorded.value_iterated_to();
        let count = recorded.count_at_value();
        if value < first {
            below += count;
        } else if value > last {
            above += count;
        } else {
            let i = buckets
                .partition_point(|b| b.upper_us <= value)
                .min(buckets.len() - 1);
            buckets[i].count += count;
        }
    }
    Some(Distribution {
        scale,
        buckets,
        below,
        above,
        total: histogram.len(),
        min,
        max,
        quantiles: [0.5, 0.9, 0.99].map(|q| histogram.value_at_quantile(q)),
    })
}

/// Round boundaries from at most `min` to above `max`, from the finest
/// series that gives at most `max_buckets` buckets; the coarsest thinned
/// further (every other boundary) when even it gives too many.
fn log_edges(min: u64, max: u64, max_buckets: usize) -> Vec<u64> {
    let mut chosen = round_edges(SERIES[0], min, max);
    for series in &SERIES[1..] {
        let edges = round_edges(series, min, max);
        if edges.len() - 1 <= max_buckets {
            chosen = edges;
        }
    }
    while chosen.len() - 1 > max_buckets {
        let last = chosen[chosen.len() - 1];
        chosen = chosen.iter().copied().step_by(2).collect();
        if chosen.last() != Some(&last) {
            chosen.push(last);
        }
    }
    chosen
}

/// The boundaries of `series` from the largest at most `min` to the
/// smallest above `max` (at least two).
fn round_edges(series: &[u64], min: u64, max: u64) -> Vec<u64> {
    let mut edges: Vec<u64> = Vec::new();
    let mut decade: u64 = 1;
    'decades: loop {
        for &step in series {
            let edge = decade.saturating_mul(step) / 10;
            if edge == 0 || edges.last().is_some_and(|&e| e >= edge) {
                continue;
            }
            edges.push(edge);
            if edge > max {
                break 'decades;
            }
        }
        match decade.checked_mul(10) {
            Some(next) => decade = next,
            None => {
                edges.push(u64::MAX);
                break;
            }
        }
    }
    let start = edges.iter().rposition(|&e| e <= min).unwrap_or(0);
    edges.split_off(start)
}

/// Equal widths of a round size (1, 2 or 5 times a power of ten
/// microseconds) from a multiple of it at most `low` to past `high`, in at
/// most `buckets` buckets.
fn linear_edges(low: u64, high: u64, buckets: usize) -> Vec<u64> {
    let buckets = (buckets as u64).max(1);
    let mut width = 1u64;
    'sizes: for power in 0..19u32 {
        for step in [1u64, 2, 5] {
            width = step.saturating_mul(10u64.saturating_pow(power));
            let start = low - low % width;
            if (high - start) / width < buckets {
                break 'sizes;
            }
        }
    }
    let start = low - low % width;
    let mut edges = vec![start];
    while edges.last().is_some_and(|&e| e <= high) {
        let next = edges[edges.len() - 1].saturating_add(width);
        if next == edges[edges.len() - 1] {
            break;
        }
        edges.push(next);
    }
    edges
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::stats::new_latency_histogram;
    use proptest::prelude::*;

    fn histogram(values: &[u64]) -> Histogram<u64> {
        let mut h = new_latency_histogram();
        for &v in values {
            h.record(v).expect("in range");
        }
        h
    }

    #[test]
    fn log_buckets_have_round_bounds_from_min_to_max() {
        let h = histogram(&[180, 450, 900, 1_800, 7_000]);
        let d = distribution(&h, Scale::Log, 6).expect("requests");
        let bounds: Vec<u64> = d.buckets.iter().map(|b| b.lower_us).collect();
        assert_eq!(bounds, [100, 200, 500, 1_000, 2_000, 5_000]);
        // With less room, every other bound.
        let d = distribution(&h, Scale::Log, 5).expect("requests");
        let bounds: Vec<u64> = d.buckets.iter().map(|b| b.lower_us).collect();
        assert_eq!(bounds, [100, 500, 2_000]);
        assert_eq!(d.buckets.last().map(|b| b.upper_us), Some(10_000));
        // With room, finer round steps.
        let d = distribution(&h, Scale::Log, 40).expect("requests");
        assert!(d.buckets.len() > 5, "{d:?}");
        assert!(d.buckets.iter().all(|b| b.lower_us < b.upper_us));
    }

    #[test]
    fn a_tight_distribution_spreads_over_the_linear_scale() {
        let values: Vec<u64> = (0..1_000).map(|i| 21_000 + i).collect();
        let h = histogram(&values);
        let log = distribution(&h, Scale::Log, 20).expect("requests");
        let linear = distribution(&h, Scale::Linear, 20).expect("requests");
        let used = |d: &Distribution| d.buckets.iter().filter(|b| b.count > 0).count();
        assert!(used(&log) <= 3, "{log:?}");
        assert!(used(&linear) >= 15, "{linear:?}");
        let counted: u64 = linear.buckets.iter().map(|b| b.count).sum();
        assert_eq!(counted + linear.below + linear.above, 1_000);
    }

    proptest! {
        #[test]
        fn buckets_count_every_request_and_hold_their_quantiles(
            values in proptest::collection::vec(1u64..60_000_000, 1..400),
            room in 1usize..60,
            linear in any::<bool>(),
        ) {
            let h = histogram(&values);
            let scale = if linear { Scale::Linear } else { Scale::Log };
            let d = distribution(&h, scale, room).expect("requests");
            prop_assert!(d.buckets.len() <= room);
            let counted: u64 = d.buckets.iter().map(|b| b.count).sum();
            prop_assert_eq!(counted + d.below + d.above, values.len() as u64);
            if scale == Scale::Log {
                prop_assert_eq!((d.below, d.above), (0, 0));
                // Each quantile lies in a bucket that counted requests.
                for q in d.quantiles {
                    let i = d.bucket_of(q);
                    prop_assert!(i.is_some(), "{} outside {:?}", q, d.buckets);
                    prop_assert!(d.buckets[i.unwrap_or(0)].count > 0);
                }
            }
        }
    }
}
