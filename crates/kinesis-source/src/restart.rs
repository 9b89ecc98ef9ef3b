//! Where a reader starts again after an expired iterator or an ended subscription: after the
//! last record it read, or, before it read any, from its start position, with `LATEST` pinned to
//! when reading from it first began (a new `LATEST` would skip what arrived meanwhile).

use std::time::{Duration, SystemTime};

use crate::api::StartPosition;

/// One reader's restart point.
#[derive(Debug)]
pub(crate) struct Restart {
    start: StartPosition,
    after: Option<String>,
    latest_since: Option<SystemTime>,
}

impl Restart {
    pub(crate) fn new(start: StartPosition) -> Self {
        Self {
            start,
            after: None,
            latest_since: None,
        }
    }

    /// Where to (re)start now; `now` is the service's clock. From `LATEST` pinned earlier, a
    /// second before the pin, for clocks that differ (a record may come twice, none is skipped).
    pub(crate) fn position(&mut self, now: SystemTime) -> StartPosition {
        match (&self.after, &self.start, self.latest_since) {
            (Some(sequence), _, _) => StartPosition::AfterSequenceNumber(sequence.clone()),
            (None, StartPosition::Latest, Some(since)) => StartPosition::AtTimestamp(
                since.checked_sub(Duration::from_secs(1)).unwrap_or(since),
            ),
            (None, StartPosition::Latest, None) => {
                self.latest_since = Some(now);
                StartPosition::Latest
            }
            (None, start, _) => start.clone(),
        }
    }

    /// Everything up to `sequence` was read.
    pub(crate) fn read_through(&mut self, sequence: String) {
        self.after = Some(sequence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_is_pinned_at_the_first_start() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut restart = Restart::new(StartPosition::Latest);
        assert_eq!(restart.position(t0), StartPosition::Latest);
        assert_eq!(
            restart.position(t0 + Duration::from_secs(400)),
            StartPosition::AtTimestamp(t0 - Duration::from_secs(1))
        );
        restart.read_through("42".into());
        assert_eq!(
            restart.position(t0),
            StartPosition::AfterSequenceNumber("42".into())
        );
        let mut trim = Restart::new(StartPosition::TrimHorizon);
        assert_eq!(trim.position(t0), StartPosition::TrimHorizon);
    }
}
