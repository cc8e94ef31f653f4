//! What an authority may become in telemetry: cleaned of credentials,
//! checked to be a `host[:port]`, and admitted to one of the bounded set of
//! labels that aggregates and metrics carry.
//!
//! Authorities come from clients (`Host`, `:authority`, CONNECT targets,
//! absolute URIs), so anything may arrive. [`strip_userinfo`] keeps
//! `user:password@` out of events and labels; [`AuthorityCap`] decides
//! which authorities get a label of their own, so that junk can neither
//! grow the label set without bound nor hold its slots for good.

use std::time::Duration;

use foldhash::HashMap;

/// The label of authorities past the cap.
pub const OTHER_AUTHORITY: &str = "other";

/// The label of authorities that are not a `host[:port]`.
pub const INVALID_AUTHORITY: &str = "invalid";

/// Requests an authority must make while every slot is taken before it may
/// take the coldest one's slot: a burst of one-off junk never gets in.
pub const ADMIT_AFTER: u64 = 3;

/// How often the authorities' request counts are halved, so that heat is
/// recent traffic: an authority that went quiet can be replaced.
pub const DECAY_EVERY: Duration = Duration::from_secs(60);

/// `authority` without a `userinfo@` prefix (RFC 3986 §3.2.1), which
/// clients may send (`Host: user:secret@host`, `http://user:secret@host/`,
/// `CONNECT user:secret@host:443`) and which must never reach telemetry.
pub fn strip_userinfo(authority: &str) -> &str {
    match authority.rfind('@') {
        Some(at) => &authority[at + 1..],
        None => authority,
    }
}

/// Whether `authority` is a `host[:port]`: a DNS name (letters, digits,
/// `-`, `_`, `.`), an IPv4 address, or a bracketed IPv6 address, and an
/// optional decimal port.
pub fn is_valid_authority(authority: &str) -> bool {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    let host_ok = authority.starts_with('[')
        || (!host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')));
    port_ok && host_ok
}

/// Maps authorities to metric and aggregate labels, keeping at most `max`
/// distinct ones, admitted by recent traffic.
///
/// While there is room, an authority gets a label at its first request
/// (what a sidecar with a few upstreams sees). Once every slot is taken, a
/// new authority is counted as `other` until it has made [`ADMIT_AFTER`]
/// requests; then it takes the slot of the tracked authority with the
/// fewest recent requests, if that one has fewer than it. Counts are
/// halved every [`DECAY_EVERY`], so that junk that filled the slots in a
/// burst is replaced by real traffic within minutes, while an authority in
/// steady use keeps its slot. An evicted authority's metric series are
/// removed (the caller is told which), so the exposition stays bounded too.
#[derive(Debug)]
pub struct AuthorityCap {
    /// Tracked authorities and their recent requests.
    tracked: HashMap<String, u64>,
    /// Authorities waiting for a slot, and their requests since they began
    /// waiting; at most `max`, cleared when full and at each decay.
    waiting: HashMap<String, u64>,
    max: usize,
    /// Evictions since the last decay: at most `max`, so that churn cannot
    /// multiply the labels one interval carries.
    evictions: usize,
    since_decay: Duration,
}

/// The label of a request's authority, and the authority that lost its
/// label to it, if any.
#[derive(Debug, PartialEq, Eq)]
pub struct Admission<'a> {
    pub label: &'a str,
    pub evicted: Option<String>,
}

impl<'a> Admission<'a> {
    fn label(label: &'a str) -> Self {
        Admission {
            label,
            evicted: None,
        }
    }
}

impl AuthorityCap {
    pub fn new(max: usize) -> Self {
        AuthorityCap {
            tracked: HashMap::default(),
            waiting: HashMap::default(),
            max,
            evictions: 0,
            since_decay: Duration::ZERO,
        }
    }

    /// The label `authority` is counted under.
    pub fn admit<'a>(&mut self, authority: &'a str) -> Admission<'a> {
        if let Some(heat) = self.tracked.get_mut(authority) {
            *heat = heat.saturating_add(1);
            return Admission::label(authority);
        }
        if !is_valid_authority(authority) {
            return Admission::label(INVALID_AUTHORITY);
        }
        if self.tracked.len() < self.max {
            self.tracked.insert(authority.to_owned(), 1);
            return Admission::label(authority);
        }
        if self.evictions >= self.max {
            return Admission::label(OTHER_AUTHORITY);
        }
        if self.waiting.len() >= self.max && !self.waiting.contains_key(authority) {
            self.waiting.clear();
        }
        let seen = self.waiting.entry(authority.to_owned()).or_default();
        *seen = seen.saturating_add(1);
        let seen = *seen;
        if seen < ADMIT_AFTER {
            return Admission::label(OTHER_AUTHORITY);
        }
        // A scan of at most `max` entries, only for an authority that
        // has earned a slot: rare, and bounded.
        let coldest = self
            .tracked
            .iter()
            .min_by_key(|(_, heat)| **heat)
            .map(|(name, heat)| (name.clone(), *heat));
        match coldest {
            Some((name, heat)) if heat < seen => {
                self.tracked.remove(&name);
                self.waiting.remove(authority);
                self.tracked.insert(authority.to_owned(), seen);
                self.evictions += 1;
                Admission {
                    label: authority,
                    evicted: Some(name),
                }
            }
            _ => Admission::label(OTHER_AUTHORITY),
        }
    }

    /// Tells the cap that `elapsed` passed (an interval); counts decay
    /// every [`DECAY_EVERY`].
    pub fn tick(&mut self, elapsed: Duration) {
        self.since_decay += elapsed;
        if self.since_decay < DECAY_EVERY {
            return;
        }
        self.since_decay = Duration::ZERO;
        for heat in self.tracked.values_mut() {
            *heat /= 2;
        }
        self.waiting.clear();
        self.evictions = 0;
    }

    /// The authorities with a label of their own.
    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn room_means_a_label_at_once_and_a_full_cap_means_other() {
        let mut cap = AuthorityCap::new(2);
        assert_eq!(cap.admit("a").label, "a");
        assert_eq!(cap.admit("b").label, "b");
        assert_eq!(cap.admit("c").label, OTHER_AUTHORITY);
        assert_eq!(cap.admit("a").label, "a");
    }

    #[test]
    fn junk_that_filled_the_slots_is_replaced_by_real_traffic() {
        // Finding 5: 1,000 junk hosts filled the cap for the life of the
        // process.
        let mut cap = AuthorityCap::new(1000);
        for i in 0..1000 {
            assert_eq!(cap.admit(&format!("junk{i}")).evicted, None);
        }
        assert_eq!(cap.len(), 1000);
        // A real host is `other` for its first requests, then takes the
        // slot of junk that made one request.
        let labels: Vec<_> = (0..ADMIT_AFTER)
            .map(|_| cap.admit("api.example").label)
            .collect();
        assert_eq!(labels[..2], [OTHER_AUTHORITY, OTHER_AUTHORITY]);
        assert_eq!(labels[2], "api.example");
        assert_eq!(cap.len(), 1000);
        assert_eq!(cap.admit("api.example").label, "api.example");
    }

    #[test]
    fn a_busy_authority_keeps_its_slot_against_churn() {
        let mut cap = AuthorityCap::new(2);
        for _ in 0..100 {
            cap.admit("busy.example");
        }
        cap.admit("quiet.example");
        // Junk making three requests each takes the quiet slot once, and
        // never the busy one.
        for i in 0..50 {
            let junk = format!("junk{i}.example");
            for _ in 0..ADMIT_AFTER {
                let admission = cap.admit(&junk);
                assert_ne!(admission.evicted.as_deref(), Some("busy.example"));
            }
        }
        assert_eq!(cap.admit("busy.example").label, "busy.example");
        // Evictions are bounded between decays.
        assert!(cap.evictions <= 2);
    }

    #[test]
    fn decay_lets_a_new_authority_replace_one_gone_quiet() {
        let mut cap = AuthorityCap::new(1);
        for _ in 0..20 {
            cap.admit("old.example");
        }
        for _ in 0..ADMIT_AFTER {
            assert_eq!(cap.admit("new.example").label, OTHER_AUTHORITY);
        }
        // 20 → 10 → 5 → 2: three minutes without traffic.
        for _ in 0..3 {
            cap.tick(DECAY_EVERY);
        }
        let labels: Vec<_> = (0..ADMIT_AFTER).map(|_| cap.admit("new.example")).collect();
        assert_eq!(
            labels.last(),
            Some(&Admission {
                label: "new.example",
                evicted: Some("old.example".into())
            })
        );
    }

    #[test]
    fn invalid_authorities_share_one_label() {
        let mut cap = AuthorityCap::new(10);
        for junk in [
            "",
            "a b",
            "x:y",
            "h:99999",
            "[::1",
            "[zz]:80",
            "a/b",
            "é.example",
            "h:",
        ] {
            assert_eq!(cap.admit(junk).label, INVALID_AUTHORITY, "{junk:?}");
        }
        assert!(cap.is_empty());
        for fine in [
            "web-svc.emojivoto:80",
            "10.0.0.7:8080",
            "[fd00::1]:443",
            "[::1]",
            "localhost",
            "a_b.example",
        ] {
            assert_eq!(cap.admit(fine).label, fine);
        }
    }

    #[test]
    fn userinfo_is_stripped() {
        assert_eq!(strip_userinfo("user:secret@host:80"), "host:80");
        assert_eq!(strip_userinfo("a@b@host"), "host");
        assert_eq!(strip_userinfo("host:80"), "host:80");
        assert_eq!(strip_userinfo("[fd00::1]:443"), "[fd00::1]:443");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn labels_are_bounded_whatever_arrives(
            authorities in proptest::collection::vec("[a-c:@\\[\\]0-9 .]{0,12}", 1..400),
            max in 0usize..8,
        ) {
            let mut cap = AuthorityCap::new(max);
            let mut labels = std::collections::HashSet::new();
            for (i, authority) in authorities.iter().enumerate() {
                let admission = cap.admit(authority);
                prop_assert!(
                    admission.label == authority
                        || admission.label == OTHER_AUTHORITY
                        || admission.label == INVALID_AUTHORITY
                );
                if admission.label != INVALID_AUTHORITY {
                    prop_assert!(is_valid_authority(admission.label) || admission.label == OTHER_AUTHORITY);
                }
                labels.insert(admission.label.to_owned());
                prop_assert!(cap.len() <= max);
                prop_assert!(cap.waiting.len() <= max.max(1));
                if i % 50 == 49 {
                    cap.tick(DECAY_EVERY);
                }
            }
            prop_assert!(!strip_userinfo(&authorities[0]).contains('@'));
        }
    }
}
