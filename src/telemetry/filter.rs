//! Server-side filters of `/events` (query parameters). They apply to
//! request and tcp events, never to `stats`.

use super::record::Direction;

/// What a filter looks at in an event.
#[derive(Clone, Copy, Debug)]
pub struct EventFacts<'a> {
    pub direction: Direction,
    /// The authority of a request; the SNI or server address of a connection.
    pub authority: &'a str,
    pub failed: bool,
    pub duration_ms: f64,
}

/// `direction=inbound|outbound`, `authority=SUBSTRING`, `failures=1`,
/// `min_ms=N`: all given conditions must hold.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    pub direction: Option<Direction>,
    pub authority: Option<String>,
    pub failures_only: bool,
    pub min_ms: Option<f64>,
}

impl Filter {
    /// Parses the filter parameters of a query string; other parameters
    /// (such as `token`) are ignored.
    pub fn from_query(query: &str) -> Result<Filter, String> {
        let mut filter = Filter::default();
        for (key, value) in form_pairs(query) {
            match key.as_str() {
                "direction" => {
                    filter.direction = Some(match value.as_str() {
                        "inbound" => Direction::Inbound,
                        "outbound" => Direction::Outbound,
                        _ => {
                            return Err(format!(
                                "direction must be inbound or outbound, not '{value}'"
                            ));
                        }
                    })
                }
                "authority" => filter.authority = Some(value),
                "failures" => {
                    filter.failures_only = match value.as_str() {
                        "1" | "true" => true,
                        "0" | "false" => false,
                        _ => return Err(format!("failures must be 1 or 0, not '{value}'")),
                    }
                }
                "min_ms" => {
                    let ms: f64 = value
                        .parse()
                        .ok()
                        .filter(|ms: &f64| ms.is_finite() && *ms >= 0.0)
                        .ok_or_else(|| {
                            format!("min_ms must be a number of milliseconds, not '{value}'")
                        })?;
                    filter.min_ms = Some(ms);
                }
                _ => {}
            }
        }
        Ok(filter)
    }

    pub fn matches(&self, facts: &EventFacts<'_>) -> bool {
        self.direction.is_none_or(|d| d == facts.direction)
            && self
                .authority
                .as_deref()
                .is_none_or(|a| facts.authority.contains(a))
            && (!self.failures_only || facts.failed)
            && self.min_ms.is_none_or(|min| facts.duration_ms > min)
    }
}

/// `key=value` pairs of a query string, percent-decoded (`+` as space).
pub fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key), decode(value))
    })
}

fn decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(direction: Direction, authority: &str, failed: bool, ms: f64) -> EventFacts<'_> {
        EventFacts {
            direction,
            authority,
            failed,
            duration_ms: ms,
        }
    }

    #[test]
    fn all_conditions_must_hold() {
        let filter =
            Filter::from_query("direction=outbound&authority=voting&failures=1&min_ms=5&token=x")
                .expect("valid");
        assert!(filter.matches(&facts(Direction::Outbound, "voting-svc:8080", true, 6.0)));
        assert!(!filter.matches(&facts(Direction::Inbound, "voting-svc:8080", true, 6.0)));
        assert!(!filter.matches(&facts(Direction::Outbound, "emoji-svc:8080", true, 6.0)));
        assert!(!filter.matches(&facts(Direction::Outbound, "voting-svc:8080", false, 6.0)));
        assert!(!filter.matches(&facts(Direction::Outbound, "voting-svc:8080", true, 5.0)));
        assert!(Filter::default().matches(&facts(Direction::Inbound, "x", false, 0.0)));
    }

    #[test]
    fn bad_values_are_explained() {
        assert!(Filter::from_query("direction=sideways").is_err());
        assert!(Filter::from_query("min_ms=fast").is_err());
        assert!(Filter::from_query("failures=maybe").is_err());
        assert_eq!(
            Filter::from_query("authority=a%20b")
                .expect("valid")
                .authority
                .as_deref(),
            Some("a b")
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Any query string gives a filter or a one-line reason.
        #[test]
        fn any_query_gives_a_filter_or_a_reason(query in "[ -~]{0,60}") {
            if let Err(reason) = Filter::from_query(&query) {
                proptest::prop_assert!(!reason.contains('\n'));
            }
        }
    }
}
