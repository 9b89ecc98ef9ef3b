//! Liveness per worker: the membership record (one heartbeat counter per worker) and the table
//! version, and what one worker has observed of them.
//!
//! In the heartbeat mode a worker does not renew its leases one by one: it increments its own
//! heartbeat every renew interval, and a lease is alive while its holder's heartbeat moves. A
//! worker is judged dead by the same clock-free rule as a lease: its heartbeat has stayed the
//! same for the lease duration on the observer's own monotonic clock. A lease whose holder is
//! not a member is judged by its own counter, as before, so workers that renew per lease and
//! workers that heartbeat can share a table (see [`ExpiryTracker`](crate::ExpiryTracker)).
//!
//! The table version is a counter that every write another worker must act on moves (a lease
//! created, taken, released, asked for, ended or reset): a worker that reads an unchanged
//! version and an unchanged set of live members knows the lease table did not change in a way
//! that concerns it, and need not list it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::ids::WorkerId;

/// The membership record as a store holds it.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Membership {
    /// The table version: moved by every write that other workers must act on.
    pub version: u64,
    /// Each member's heartbeat counter.
    pub heartbeats: BTreeMap<WorkerId, u64>,
}

#[derive(Debug, Clone)]
struct Beat {
    counter: u64,
    /// When this worker last saw the heartbeat move (or first saw it).
    moved_at: Instant,
}

/// What one worker has observed of every member's heartbeat, and since when.
///
/// ```
/// use std::time::{Duration, Instant};
/// use shardwise_lease_core::{MemberTracker, Membership, WorkerId};
///
/// let w1 = WorkerId::new("w1")?;
/// let mut record = Membership::default();
/// record.heartbeats.insert(w1.clone(), 7);
/// let (start, ten_s) = (Instant::now(), Duration::from_secs(10));
/// let mut members = MemberTracker::new();
/// // Read every 5 s (a take interval); a member is never judged past the last read.
/// for secs in [0, 5] {
///     members.observe(&record, start + Duration::from_secs(secs), ten_s);
/// }
/// assert!(members.is_alive(&w1, start + Duration::from_secs(9), ten_s));
/// members.observe(&record, start + ten_s, ten_s);
/// assert!(!members.is_alive(&w1, start + ten_s, ten_s)); // the heartbeat never moved
/// # Ok::<(), shardwise_lease_core::InvalidValue>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemberTracker {
    seen: HashMap<WorkerId, Beat>,
    /// When the membership record was last read: no member is judged past it.
    observed_at: Option<Instant>,
}

impl MemberTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a membership record read at `now`; members missing from it are forgotten. A
    /// member seen for the first time gets a full lease duration to show it is alive, and so
    /// does every member after this worker went `lease_duration` or more without a read (it was
    /// frozen, or its reads failed): a heartbeat counter starts again at 1 when its worker
    /// leaves and comes back, so one seen at the same value across a long gap may have moved.
    pub fn observe(&mut self, membership: &Membership, now: Instant, lease_duration: Duration) {
        let gap = self
            .observed_at
            .is_some_and(|at| now.saturating_duration_since(at) >= lease_duration);
        if gap {
            for beat in self.seen.values_mut() {
                beat.moved_at = now;
            }
        }
        self.observed_at = Some(now);
        self.seen
            .retain(|worker, _| membership.heartbeats.contains_key(worker));
        for (worker, counter) in &membership.heartbeats {
            match self.seen.get_mut(worker) {
                Some(beat) if beat.counter == *counter => {}
                Some(beat) => {
                    beat.counter = *counter;
                    beat.moved_at = now;
                }
                None => {
                    self.seen.insert(
                        worker.clone(),
                        Beat {
                            counter: *counter,
                            moved_at: now,
                        },
                    );
                }
            }
        }
    }

    /// Whether `worker` is in the membership record last observed.
    pub fn is_member(&self, worker: &WorkerId) -> bool {
        self.seen.contains_key(worker)
    }

    /// Whether `worker` is a member whose heartbeat moved less than `lease_duration` before
    /// `now` (first sight counts as a move), as far as this worker can tell: a heartbeat is
    /// never judged past the last read of the record (it may have moved since), so a worker
    /// whose reads fail judges no member dead.
    pub fn is_alive(&self, worker: &WorkerId, now: Instant, lease_duration: Duration) -> bool {
        let now = self.observed_at.map_or(now, |at| now.min(at));
        self.seen
            .get(worker)
            .is_some_and(|beat| now.saturating_duration_since(beat.moved_at) < lease_duration)
    }

    /// The members alive at `now`.
    pub fn alive(&self, now: Instant, lease_duration: Duration) -> BTreeSet<WorkerId> {
        self.seen
            .keys()
            .filter(|worker| self.is_alive(worker, now, lease_duration))
            .cloned()
            .collect()
    }

    /// Every member whose heartbeat has not moved for at least `for_at_least` at `now`, with
    /// the heartbeat counter last seen.
    pub fn silent(&self, now: Instant, for_at_least: Duration) -> Vec<(WorkerId, u64)> {
        let now = self.observed_at.map_or(now, |at| now.min(at));
        self.seen
            .iter()
            .filter(|(_, beat)| now.saturating_duration_since(beat.moved_at) >= for_at_least)
            .map(|(worker, beat)| (worker.clone(), beat.counter))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(version: u64, beats: &[(&str, u64)]) -> Membership {
        Membership {
            version,
            heartbeats: beats
                .iter()
                .map(|(w, c)| (WorkerId::new(*w).unwrap(), *c))
                .collect(),
        }
    }

    #[test]
    fn a_moving_heartbeat_is_alive_a_still_one_dies() {
        let t0 = Instant::now();
        let d = Duration::from_secs(10);
        let s = Duration::from_secs;
        let (a, b) = (WorkerId::new("a").unwrap(), WorkerId::new("b").unwrap());
        let mut members = MemberTracker::new();
        members.observe(&record(1, &[("a", 1), ("b", 5)]), t0, d);
        members.observe(&record(1, &[("a", 2), ("b", 5)]), t0 + s(8), d);
        members.observe(&record(1, &[("a", 2), ("b", 5)]), t0 + s(17), d);
        assert!(members.is_alive(&a, t0 + s(17), d));
        assert!(!members.is_alive(&b, t0 + s(10), d), "b never moved");
        assert_eq!(members.alive(t0 + s(10), d), BTreeSet::from([a.clone()]));
        assert_eq!(members.silent(t0 + s(10), d), vec![(b.clone(), 5)]);
        members.observe(&record(2, &[("a", 3)]), t0 + s(18), d);
        assert!(!members.is_member(&b), "a member that left is forgotten");
        assert!(!members.is_alive(&b, t0 + s(18), d));
    }

    /// A worker that read nothing for a lease duration (frozen) cannot tell a heartbeat that
    /// stood still from one that started again at 1 and climbed back to the same value.
    #[test]
    fn a_gap_in_the_reads_starts_every_member_afresh() {
        let t0 = Instant::now();
        let d = Duration::from_secs(10);
        let a = WorkerId::new("a").unwrap();
        let mut members = MemberTracker::new();
        members.observe(&record(1, &[("a", 5)]), t0, d);
        // Frozen for a minute; meanwhile `a` left, came back, and is at 5 again.
        members.observe(&record(1, &[("a", 5)]), t0 + Duration::from_secs(60), d);
        assert!(members.is_alive(&a, t0 + Duration::from_secs(60), d));
        members.observe(&record(1, &[("a", 5)]), t0 + Duration::from_secs(65), d);
        members.observe(&record(1, &[("a", 5)]), t0 + Duration::from_secs(70), d);
        assert!(
            !members.is_alive(&a, t0 + Duration::from_secs(70), d),
            "then it stood still"
        );
    }

    /// A worker that cannot read the record (a store that fails, a slow listing) must not take
    /// the silence of its own reads for the members' silence.
    #[test]
    fn no_member_is_judged_past_the_last_read() {
        let t0 = Instant::now();
        let d = Duration::from_secs(10);
        let a = WorkerId::new("a").unwrap();
        let mut members = MemberTracker::new();
        members.observe(&record(1, &[("a", 1)]), t0, d);
        members.observe(&record(1, &[("a", 2)]), t0 + Duration::from_secs(5), d);
        assert!(members.is_alive(&a, t0 + Duration::from_secs(60), d));
        assert!(members.silent(t0 + Duration::from_secs(60), d).is_empty());
    }
}
