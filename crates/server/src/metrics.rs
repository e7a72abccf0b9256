//! Counters of the settlement API in Prometheus' text format, kept in the
//! application's state (no global). Latency is counted in whole
//! microseconds; bucket bounds and sums are written as decimal seconds from
//! those integers.

use jiuzhu_store::{NotificationStats, WriteStats};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The engine's outcomes, in the order they are written.
const OUTCOMES: [&str; 5] = ["assisted", "capped", "duplicate", "not_eligible", "no_rule"];

/// Upper bounds of the latency buckets, in microseconds (1 ms to 10 s).
const BUCKET_BOUNDS_MICROS: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    /// Fresh decisions by outcome, in the order of [`OUTCOMES`].
    outcomes: [AtomicU64; OUTCOMES.len()],
    /// Requests answered with an earlier decision (same body again).
    replays: AtomicU64,
    /// Settlement requests refused, by HTTP status.
    refusals: Mutex<BTreeMap<u16, u64>>,
    reversals: AtomicU64,
    /// Settlement requests whose latency fell in each bucket (not
    /// cumulative; the last is above every bound).
    buckets: [AtomicU64; BUCKET_BOUNDS_MICROS.len() + 1],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
    /// The data-sharing routes (`/api/v1/feeds/…`): requests by route and
    /// HTTP status, their time, and the rows of the files pushed.
    feeds: Mutex<FeedCounts>,
}

/// The feed routes, by name (`spells`, `invoices`, `decisions`).
#[derive(Debug, Default)]
struct FeedCounts {
    requests: BTreeMap<(&'static str, u16), u64>,
    micros: BTreeMap<&'static str, (u64, u64)>,
    /// Rows received, and rows stored (spells added or changed, bills
    /// decided; decisions shared for `decisions`).
    rows: BTreeMap<&'static str, (u64, u64)>,
}

/// The feed route a path names, if it is one.
pub(crate) fn feed_route(path: &str) -> Option<&'static str> {
    match path.strip_prefix("/api/v1/feeds/")? {
        "spells" => Some("spells"),
        "invoices" => Some("invoices"),
        "decisions" => Some("decisions"),
        _ => Some("other"),
    }
}

impl Metrics {
    /// A fresh decision with `outcome`.
    pub(crate) fn settled(&self, outcome: &str) {
        match OUTCOMES.iter().position(|known| *known == outcome) {
            Some(index) => {
                self.outcomes[index].fetch_add(1, Ordering::Relaxed);
            }
            None => tracing::warn!(outcome, "a decision with an outcome the metrics do not know"),
        }
    }

    pub(crate) fn replayed(&self) {
        self.replays.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self, status: u16) {
        let mut refusals = self
            .refusals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *refusals.entry(status).or_insert(0) += 1;
    }

    pub(crate) fn reversed(&self) {
        self.reversals.fetch_add(1, Ordering::Relaxed);
    }

    /// One settlement request took `elapsed`.
    pub(crate) fn observe_settlement(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BUCKET_BOUNDS_MICROS
            .iter()
            .position(|bound| micros <= *bound)
            .unwrap_or(BUCKET_BOUNDS_MICROS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// A request to a feed route answered with `status` after `elapsed`.
    pub(crate) fn feed_request(&self, route: &'static str, status: u16, elapsed: Duration) {
        let mut feeds = self.feeds.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        *feeds.requests.entry((route, status)).or_insert(0) += 1;
        let time = feeds.micros.entry(route).or_insert((0, 0));
        time.0 += 1;
        time.1 += u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    }

    /// A file pushed to a feed route: `received` rows, `stored` of them
    /// stored now.
    pub(crate) fn feed_rows(&self, route: &'static str, received: u64, stored: u64) {
        let mut feeds = self.feeds.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let rows = feeds.rows.entry(route).or_insert((0, 0));
        rows.0 += received;
        rows.1 += stored;
    }

    /// Everything, in Prometheus' text exposition format (0.0.4).
    pub(crate) fn render(&self, writes: WriteStats) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = self.write(&mut text, writes);
        text
    }

    fn write(&self, text: &mut String, writes: WriteStats) -> std::fmt::Result {
        writeln!(
            text,
            "# HELP jiuzhu_write_transactions_total Durable transactions committed by the store's writer."
        )?;
        writeln!(text, "# TYPE jiuzhu_write_transactions_total counter")?;
        writeln!(text, "jiuzhu_write_transactions_total {}", writes.transactions)?;
        writeln!(
            text,
            "# HELP jiuzhu_writes_total Settlements and reversals written by the store's writer (several share a transaction under load)."
        )?;
        writeln!(text, "# TYPE jiuzhu_writes_total counter")?;
        writeln!(text, "jiuzhu_writes_total {}", writes.writes)?;
        writeln!(
            text,
            "# HELP jiuzhu_settlements_total Settlements decided, by outcome."
        )?;
        writeln!(text, "# TYPE jiuzhu_settlements_total counter")?;
        for (outcome, count) in OUTCOMES.iter().zip(&self.outcomes) {
            let count = count.load(Ordering::Relaxed);
            writeln!(text, "jiuzhu_settlements_total{{outcome=\"{outcome}\"}} {count}")?;
        }
        writeln!(
            text,
            "# HELP jiuzhu_settlement_replays_total Settlement requests answered with the earlier decision."
        )?;
        writeln!(text, "# TYPE jiuzhu_settlement_replays_total counter")?;
        writeln!(
            text,
            "jiuzhu_settlement_replays_total {}",
            self.replays.load(Ordering::Relaxed)
        )?;
        writeln!(
            text,
            "# HELP jiuzhu_settlement_refusals_total Settlement requests refused, by HTTP status."
        )?;
        writeln!(text, "# TYPE jiuzhu_settlement_refusals_total counter")?;
        let refusals = self
            .refusals
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        for (status, count) in refusals {
            writeln!(
                text,
                "jiuzhu_settlement_refusals_total{{status=\"{status}\"}} {count}"
            )?;
        }
        writeln!(text, "# HELP jiuzhu_reversals_total Settlements reversed.")?;
        writeln!(text, "# TYPE jiuzhu_reversals_total counter")?;
        writeln!(
            text,
            "jiuzhu_reversals_total {}",
            self.reversals.load(Ordering::Relaxed)
        )?;
        writeln!(
            text,
            "# HELP jiuzhu_settlement_seconds Time to answer a settlement request."
        )?;
        writeln!(text, "# TYPE jiuzhu_settlement_seconds histogram")?;
        let mut cumulative = 0u64;
        for (index, bound) in BUCKET_BOUNDS_MICROS.iter().enumerate() {
            cumulative += self.buckets[index].load(Ordering::Relaxed);
            writeln!(
                text,
                "jiuzhu_settlement_seconds_bucket{{le=\"{}\"}} {cumulative}",
                seconds(*bound)
            )?;
        }
        cumulative += self.buckets[BUCKET_BOUNDS_MICROS.len()].load(Ordering::Relaxed);
        writeln!(
            text,
            "jiuzhu_settlement_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        )?;
        writeln!(
            text,
            "jiuzhu_settlement_seconds_sum {}",
            seconds(self.latency_sum_micros.load(Ordering::Relaxed))
        )?;
        writeln!(
            text,
            "jiuzhu_settlement_seconds_count {}",
            self.latency_count.load(Ordering::Relaxed)
        )?;
        let feeds = self.feeds.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        writeln!(
            text,
            "# HELP jiuzhu_feed_requests_total Requests to the data-sharing routes, by route and HTTP status."
        )?;
        writeln!(text, "# TYPE jiuzhu_feed_requests_total counter")?;
        for ((route, status), count) in &feeds.requests {
            writeln!(
                text,
                "jiuzhu_feed_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            )?;
        }
        writeln!(
            text,
            "# HELP jiuzhu_feed_seconds Time to answer a request to a data-sharing route."
        )?;
        writeln!(text, "# TYPE jiuzhu_feed_seconds summary")?;
        for (route, (count, micros)) in &feeds.micros {
            writeln!(
                text,
                "jiuzhu_feed_seconds_sum{{route=\"{route}\"}} {}",
                seconds(*micros)
            )?;
            writeln!(text, "jiuzhu_feed_seconds_count{{route=\"{route}\"}} {count}")?;
        }
        writeln!(
            text,
            "# HELP jiuzhu_feed_rows_total Rows of the files pushed (received) and of them stored now (stored); decisions shared."
        )?;
        writeln!(text, "# TYPE jiuzhu_feed_rows_total counter")?;
        for (route, (received, stored)) in &feeds.rows {
            writeln!(
                text,
                "jiuzhu_feed_rows_total{{route=\"{route}\",rows=\"received\"}} {received}"
            )?;
            writeln!(
                text,
                "jiuzhu_feed_rows_total{{route=\"{route}\",rows=\"stored\"}} {stored}"
            )?;
        }
        Ok(())
    }
}

/// What the notification dispatcher of this process has sent and failed
/// (`jiuzhu serve` runs it beside the server), in the same format.
pub(crate) fn render_notifications(stats: NotificationStats) -> String {
    format!(
        "# HELP jiuzhu_notifications_sent_total Notifications handed to the sender and marked sent.\n\
         # TYPE jiuzhu_notifications_sent_total counter\n\
         jiuzhu_notifications_sent_total {}\n\
         # HELP jiuzhu_notifications_failed_total Attempts to send a notification that failed (each is tried again).\n\
         # TYPE jiuzhu_notifications_failed_total counter\n\
         jiuzhu_notifications_failed_total {}\n",
        stats.sent, stats.failed
    )
}

/// Whole microseconds as decimal seconds without trailing zeros: `2500000`
/// is `2.5`, `1000` is `0.001`, `3000000` is `3`.
fn seconds(micros: u64) -> String {
    let whole = micros / 1_000_000;
    let fraction = micros % 1_000_000;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microseconds_are_written_as_decimal_seconds() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1_000), "0.001");
        assert_eq!(seconds(2_500_000), "2.5");
        assert_eq!(seconds(10_000_000), "10");
        assert_eq!(seconds(1_234_567), "1.234567");
    }

    #[test]
    fn the_histogram_is_cumulative_and_ends_with_every_observation() {
        let metrics = Metrics::default();
        metrics.observe_settlement(Duration::from_micros(800));
        metrics.observe_settlement(Duration::from_millis(30));
        metrics.observe_settlement(Duration::from_secs(60));
        let text = metrics.render(WriteStats::default());
        assert!(text.contains("jiuzhu_settlement_seconds_bucket{le=\"0.001\"} 1\n"));
        assert!(text.contains("jiuzhu_settlement_seconds_bucket{le=\"0.025\"} 1\n"));
        assert!(text.contains("jiuzhu_settlement_seconds_bucket{le=\"0.05\"} 2\n"));
        assert!(text.contains("jiuzhu_settlement_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("jiuzhu_settlement_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("jiuzhu_settlement_seconds_sum 60.0308\n"));
        assert!(text.contains("jiuzhu_settlement_seconds_count 3\n"));
    }

    #[test]
    fn feed_requests_are_counted_by_route_and_status_with_their_rows() {
        let metrics = Metrics::default();
        metrics.feed_request("spells", 200, Duration::from_millis(1500));
        metrics.feed_request("spells", 422, Duration::from_millis(500));
        metrics.feed_request("spells", 200, Duration::from_millis(1000));
        metrics.feed_rows("spells", 10, 7);
        metrics.feed_rows("spells", 5, 0);
        let text = metrics.render(WriteStats::default());
        assert!(
            text.contains("jiuzhu_feed_requests_total{route=\"spells\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("jiuzhu_feed_requests_total{route=\"spells\",status=\"422\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("jiuzhu_feed_seconds_sum{route=\"spells\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("jiuzhu_feed_rows_total{route=\"spells\",rows=\"received\"} 15\n"),
            "{text}"
        );
        assert!(
            text.contains("jiuzhu_feed_rows_total{route=\"spells\",rows=\"stored\"} 7\n"),
            "{text}"
        );
        assert_eq!(feed_route("/api/v1/feeds/invoices"), Some("invoices"));
        assert_eq!(feed_route("/api/v1/settlements"), None);
    }
}
