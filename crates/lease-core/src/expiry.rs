//! Lease expiry judged without clocks shared between hosts.
//!
//! A worker considers a lease expired when it has itself seen the lease's counter stay the same
//! for the lease duration, measured on its own monotonic clock (the KCL's rule). Nothing about
//! time is stored, so hosts need no synchronised clocks. A free lease is takeable at once.
//!
//! A lease whose holder is a member of the heartbeat membership ([`MemberTracker`]) is judged by
//! that member's heartbeat instead, by the same rule: its holder does not renew it one by one.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::ids::{LeaseKey, WorkerId};
use crate::lease::Lease;
use crate::membership::{MemberTracker, Membership};

#[derive(Debug, Clone)]
struct Observation {
    counter: u64,
    /// Who held the lease when last seen; `None` when free.
    holder: Option<WorkerId>,
    /// When this worker last saw the counter move; `None` when it never saw it move and the
    /// lease was free at first sight (expired from the start).
    moved_at: Option<Instant>,
}

/// What one worker has observed of every lease's counter, and since when.
///
/// The caller supplies `now` from its monotonic clock (`tokio::time::Instant::now().into_std()`
/// under a paused test clock), so the tracker is a plain value that tests drive step by step.
///
/// ```
/// use std::time::{Duration, Instant};
/// use shardwise_lease_core::{Checkpoint, ExpiryTracker, Lease, LeaseKey, WorkerId};
///
/// let mut lease = Lease::new(LeaseKey::new("shardId-1")?, Checkpoint::TrimHorizon);
/// lease.owner = Some(WorkerId::new("w1")?);
/// let start = Instant::now();
/// let ten_s = Duration::from_secs(10);
/// let mut tracker = ExpiryTracker::new();
/// tracker.observe_all(std::slice::from_ref(&lease), start);
/// assert!(!tracker.is_expired(&lease.key, start + Duration::from_secs(9), ten_s));
/// assert!(tracker.is_expired(&lease.key, start + ten_s, ten_s)); // counter never moved
/// # Ok::<(), shardwise_lease_core::InvalidValue>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ExpiryTracker {
    seen: HashMap<LeaseKey, Observation>,
    members: MemberTracker,
}

impl ExpiryTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a full listing taken at `now`; leases missing from it are forgotten.
    pub fn observe_all(&mut self, leases: &[Lease], now: Instant) {
        let present: HashSet<&LeaseKey> = leases.iter().map(|l| &l.key).collect();
        self.seen.retain(|key, _| present.contains(key));
        for lease in leases {
            self.observe(lease, now);
        }
    }

    /// Records the membership record read at `now`: a lease whose holder is a member is
    /// judged by the member's heartbeat (see [`MemberTracker::observe`]).
    pub fn observe_members(
        &mut self,
        membership: &Membership,
        now: Instant,
        lease_duration: Duration,
    ) {
        self.members.observe(membership, now, lease_duration);
    }

    /// The members' heartbeats as observed.
    pub fn members(&self) -> &MemberTracker {
        &self.members
    }

    /// Records one lease as seen at `now` (after a listing, or after this worker's own write).
    pub fn observe(&mut self, lease: &Lease, now: Instant) {
        let holder = lease.holder().cloned();
        let owned = holder.is_some();
        match self.seen.get_mut(&lease.key) {
            Some(seen) if seen.counter == lease.counter => seen.holder = holder,
            Some(seen) => {
                seen.counter = lease.counter;
                seen.holder = holder;
                seen.moved_at = Some(now);
            }
            None => {
                // First sight: an owned lease gets a full lease duration to show it is alive; a
                // free one is takeable at once.
                let moved_at = owned.then_some(now);
                self.seen.insert(
                    lease.key.clone(),
                    Observation {
                        counter: lease.counter,
                        holder,
                        moved_at,
                    },
                );
            }
        }
    }

    /// Whether the lease at `key` is expired at `now`: free when last seen; held by a member
    /// whose heartbeat has not moved for `lease_duration`; or held by a worker that is not a
    /// member, with a counter unchanged for at least `lease_duration`. A lease never observed
    /// is not expired.
    pub fn is_expired(&self, key: &LeaseKey, now: Instant, lease_duration: Duration) -> bool {
        match self.seen.get(key) {
            None => false,
            Some(Observation { holder: None, .. }) => true,
            Some(Observation {
                holder: Some(holder),
                ..
            }) if self.members.is_member(holder) => {
                !self.members.is_alive(holder, now, lease_duration)
            }
            Some(Observation { moved_at: None, .. }) => true,
            Some(Observation {
                moved_at: Some(at), ..
            }) => now.saturating_duration_since(*at) >= lease_duration,
        }
    }

    /// The keys of every observed lease that is expired at `now`.
    pub fn expired_keys(&self, now: Instant, lease_duration: Duration) -> HashSet<LeaseKey> {
        self.seen
            .keys()
            .filter(|key| self.is_expired(key, now, lease_duration))
            .cloned()
            .collect()
    }

    /// When this worker last saw the counter of `key` move, if it ever did.
    pub fn last_moved(&self, key: &LeaseKey) -> Option<Instant> {
        self.seen.get(key).and_then(|seen| seen.moved_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Checkpoint, WorkerId};

    const D: Duration = Duration::from_secs(10);

    fn lease(owner: Option<&str>, counter: u64) -> Lease {
        let mut l = Lease::new(LeaseKey::new("k").unwrap(), Checkpoint::TrimHorizon);
        l.owner = owner.map(|o| WorkerId::new(o).unwrap());
        l.counter = counter;
        l
    }

    #[test]
    fn expiry_table() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        // (observations (lease, at), check time, expected)
        type Case = (&'static str, Vec<(Lease, Instant)>, Instant, bool);
        let cases: Vec<Case> = vec![
            ("never seen", vec![], t0 + s(100), false),
            ("free at first sight", vec![(lease(None, 3), t0)], t0, true),
            (
                "owned, just seen",
                vec![(lease(Some("a"), 3), t0)],
                t0 + s(9),
                false,
            ),
            (
                "owned, unchanged for the duration",
                vec![(lease(Some("a"), 3), t0)],
                t0 + D,
                true,
            ),
            (
                "owned, counter moved recently",
                vec![(lease(Some("a"), 3), t0), (lease(Some("a"), 4), t0 + s(8))],
                t0 + s(15),
                false,
            ),
            (
                "owned, unchanged across many listings",
                vec![
                    (lease(Some("a"), 3), t0),
                    (lease(Some("a"), 3), t0 + s(5)),
                    (lease(Some("a"), 3), t0 + s(9)),
                ],
                t0 + D,
                true,
            ),
            (
                "released after being owned",
                vec![(lease(Some("a"), 3), t0), (lease(None, 4), t0 + s(1))],
                t0 + s(1),
                true,
            ),
            (
                "taken after being free",
                vec![(lease(None, 3), t0), (lease(Some("b"), 4), t0 + s(1))],
                t0 + s(2),
                false,
            ),
        ];
        for (name, observations, now, expected) in cases {
            let mut tracker = ExpiryTracker::new();
            for (l, at) in &observations {
                tracker.observe_all(std::slice::from_ref(l), *at);
            }
            let key = LeaseKey::new("k").unwrap();
            assert_eq!(tracker.is_expired(&key, now, D), expected, "{name}");
        }
    }

    #[test]
    fn a_members_lease_lives_by_its_heartbeat() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let key = LeaseKey::new("k").unwrap();
        let membership = |beat: u64| Membership {
            version: 1,
            heartbeats: [(WorkerId::new("a").unwrap(), beat)].into(),
        };
        let mut tracker = ExpiryTracker::new();
        tracker.observe_all(&[lease(Some("a"), 3)], t0);
        tracker.observe_members(&membership(1), t0, D);
        tracker.observe_members(&membership(2), t0 + s(8), D);
        tracker.observe_all(&[lease(Some("a"), 3)], t0 + s(15));
        tracker.observe_members(&membership(2), t0 + s(13), D);
        tracker.observe_members(&membership(2), t0 + s(18), D);
        assert!(
            !tracker.is_expired(&key, t0 + s(15), D),
            "the counter stood still, the heartbeat moved"
        );
        assert!(
            tracker.is_expired(&key, t0 + s(18), D),
            "the heartbeat stood still"
        );
        // A holder that is not a member: its counter decides, whatever the heartbeats.
        let mut tracker = ExpiryTracker::new();
        tracker.observe_members(&membership(1), t0, D);
        tracker.observe_all(&[lease(Some("b"), 3)], t0);
        tracker.observe_all(&[lease(Some("b"), 4)], t0 + s(9));
        assert!(!tracker.is_expired(&key, t0 + s(18), D));
        assert!(tracker.is_expired(&key, t0 + s(19), D));
    }

    #[test]
    fn forgets_leases_that_disappear() {
        let t0 = Instant::now();
        let mut tracker = ExpiryTracker::new();
        tracker.observe_all(&[lease(None, 1)], t0);
        tracker.observe_all(&[], t0);
        assert!(tracker.expired_keys(t0, D).is_empty());
    }
}
