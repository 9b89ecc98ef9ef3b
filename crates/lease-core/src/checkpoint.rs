//! Checkpoints: where a shard's processing stands, as stored in its lease.

use std::cmp::Ordering;
use std::fmt;

use crate::error::InvalidValue;
use crate::sequence::{ExtendedSequenceNumber, SequenceNumber};

/// Where processing of a shard stands: a start sentinel before any record was processed, the
/// record processing resumes at, the position of the last processed user record, or the end of
/// a closed shard.
///
/// The stored text form is the KCL's: a decimal sequence number, or one of the sentinels
/// `TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`, `SHARD_END`; the sub-sequence number is stored
/// beside it (0 for sentinels, -1 for [`Checkpoint::Before`]).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Checkpoint {
    /// Nothing processed yet; start at the oldest record still retained.
    TrimHorizon,
    /// Nothing processed yet; start after the newest record at the time reading begins.
    Latest,
    /// Nothing processed yet; start at the configured timestamp (kept in the configuration, as
    /// in the KCL, not in the lease).
    AtTimestamp,
    /// Nothing of this Kinesis record or after it is processed yet: processing resumes at it.
    /// The worker writes it over `LATEST` when a shard's first records arrive, before the
    /// processor sees them, so that a shard read from `LATEST` never loses its place when its
    /// lease moves before the processor checkpointed. Stored as the sequence number with
    /// sub-sequence number -1, which the Java KCL reads the same way: it resumes at the record
    /// and drops only records at or before (sequence, -1), which is none of this one.
    Before(SequenceNumber),
    /// Every user record up to and including this position is processed.
    At(ExtendedSequenceNumber),
    /// The shard is closed and every record in it is processed.
    ShardEnd,
}

/// How far a checkpoint has come, for monotonicity checks: every start sentinel is "nothing yet",
/// any position is after it (`Before` a record comes before every sub-record of it), the shard
/// end is after every position.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Progress<'a> {
    Start,
    At(&'a SequenceNumber, SubSequence),
    End,
}

/// Within one Kinesis record: before it, or through one of its user records.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SubSequence {
    Before,
    Through(u64),
}

impl Checkpoint {
    /// The text of the sentinel `TRIM_HORIZON`.
    pub const TRIM_HORIZON: &'static str = "TRIM_HORIZON";
    /// The text of the sentinel `LATEST`.
    pub const LATEST: &'static str = "LATEST";
    /// The text of the sentinel `AT_TIMESTAMP`.
    pub const AT_TIMESTAMP: &'static str = "AT_TIMESTAMP";
    /// The text of the sentinel `SHARD_END`.
    pub const SHARD_END: &'static str = "SHARD_END";

    /// A checkpoint at a user record.
    pub fn at(sequence: SequenceNumber, sub_sequence: u64) -> Self {
        Self::At(ExtendedSequenceNumber::new(sequence, sub_sequence))
    }

    /// The sub-sequence number stored with [`Checkpoint::Before`].
    pub const BEFORE_SUB_SEQUENCE: i128 = -1;

    /// Reads the stored form: the checkpoint text and the sub-sequence number beside it (which
    /// sentinels ignore). The number is an `i128` so that every stored value, -1 and every
    /// `u64`, fits.
    pub fn from_stored(text: &str, sub_sequence: i128) -> Result<Self, InvalidValue> {
        Ok(match text {
            Self::TRIM_HORIZON => Self::TrimHorizon,
            Self::LATEST => Self::Latest,
            Self::AT_TIMESTAMP => Self::AtTimestamp,
            Self::SHARD_END => Self::ShardEnd,
            digits => {
                let sequence = SequenceNumber::new(digits).map_err(|e| {
                    InvalidValue::new("checkpoint", text, format!("neither a sentinel nor a {e}"))
                })?;
                match u64::try_from(sub_sequence) {
                    Ok(sub) => Self::at(sequence, sub),
                    Err(_) if sub_sequence == Self::BEFORE_SUB_SEQUENCE => Self::Before(sequence),
                    Err(_) => {
                        return Err(InvalidValue::new(
                            "checkpoint sub-sequence number",
                            &sub_sequence.to_string(),
                            "must be -1 (before the record) or from 0 to 2^64 - 1",
                        ));
                    }
                }
            }
        })
    }

    /// The stored text (sequence number or sentinel name).
    pub fn stored_text(&self) -> &str {
        match self {
            Self::TrimHorizon => Self::TRIM_HORIZON,
            Self::Latest => Self::LATEST,
            Self::AtTimestamp => Self::AT_TIMESTAMP,
            Self::ShardEnd => Self::SHARD_END,
            Self::Before(sequence) => sequence.as_str(),
            Self::At(position) => position.sequence.as_str(),
        }
    }

    /// The stored sub-sequence number: 0 for sentinels, -1 for [`Checkpoint::Before`], the
    /// position's otherwise (an `i128`, so that -1 and every `u64` fit; a store that keeps a
    /// signed 64-bit number refuses what does not fit).
    pub fn stored_sub_sequence(&self) -> i128 {
        match self {
            Self::At(position) => i128::from(position.sub_sequence),
            Self::Before(_) => Self::BEFORE_SUB_SEQUENCE,
            _ => 0,
        }
    }

    /// The record position, when this checkpoint is one.
    pub fn position(&self) -> Option<&ExtendedSequenceNumber> {
        match self {
            Self::At(position) => Some(position),
            _ => None,
        }
    }

    /// Whether this is one of the start sentinels (`TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`).
    pub fn is_start(&self) -> bool {
        matches!(self, Self::TrimHorizon | Self::Latest | Self::AtTimestamp)
    }

    /// Whether the shard is fully processed.
    pub fn is_shard_end(&self) -> bool {
        matches!(self, Self::ShardEnd)
    }

    fn progress(&self) -> Progress<'_> {
        match self {
            Self::TrimHorizon | Self::Latest | Self::AtTimestamp => Progress::Start,
            Self::Before(sequence) => Progress::At(sequence, SubSequence::Before),
            Self::At(position) => Progress::At(
                &position.sequence,
                SubSequence::Through(position.sub_sequence),
            ),
            Self::ShardEnd => Progress::End,
        }
    }

    /// Compares how far two checkpoints have come: start sentinels are equal to each other and
    /// before every position; `Before` a record is before every position in it; `SHARD_END` is
    /// after everything. This is the order a store enforces
    /// (a checkpoint never moves backwards).
    pub fn cmp_progress(&self, other: &Self) -> Ordering {
        self.progress().cmp(&other.progress())
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::At(position) => fmt::Display::fmt(position, f),
            Self::Before(sequence) => write!(f, "before {sequence}"),
            sentinel => f.write_str(sentinel.stored_text()),
        }
    }
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The first phase of a two-phase checkpoint: the position the application is about to commit,
/// with optional opaque state bytes it wants to find again if it restarts before committing.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct PendingCheckpoint {
    /// The prepared position.
    pub position: Checkpoint,
    /// Application state stored with the prepared position.
    pub state: Option<Vec<u8>>,
}

impl PendingCheckpoint {
    /// A prepared checkpoint, with or without state bytes.
    pub fn new(position: Checkpoint, state: Option<Vec<u8>>) -> Self {
        Self { position, state }
    }
}

/// One checkpoint write: the new checkpoint and the pending checkpoint to leave beside it
/// (`None` clears it). Preparing keeps the current checkpoint and sets a pending one; committing
/// sets the checkpoint to the prepared position and clears the pending one.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CheckpointUpdate {
    /// The checkpoint after the write; never behind the stored one.
    pub checkpoint: Checkpoint,
    /// The pending checkpoint after the write; never behind `checkpoint`.
    pub pending: Option<PendingCheckpoint>,
}

impl CheckpointUpdate {
    /// Sets the checkpoint and clears any pending one.
    pub fn commit(checkpoint: Checkpoint) -> Self {
        Self {
            checkpoint,
            pending: None,
        }
    }

    /// Keeps `current` as the checkpoint and prepares `pending`.
    pub fn prepare(current: Checkpoint, pending: PendingCheckpoint) -> Self {
        Self {
            checkpoint: current,
            pending: Some(pending),
        }
    }

    /// Checks the update on its own, before any store is asked: the pending checkpoint must not
    /// be behind the checkpoint.
    pub fn validate(&self) -> Result<(), InvalidValue> {
        if let Some(pending) = &self.pending
            && pending.position.cmp_progress(&self.checkpoint) == Ordering::Less
        {
            return Err(InvalidValue::new(
                "pending checkpoint",
                &pending.position.to_string(),
                format!("is behind the checkpoint {}", self.checkpoint),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: &str, sub: u64) -> Checkpoint {
        Checkpoint::at(SequenceNumber::new(seq).unwrap(), sub)
    }

    fn before(seq: &str) -> Checkpoint {
        Checkpoint::Before(SequenceNumber::new(seq).unwrap())
    }

    #[test]
    fn stored_form_round_trips() {
        for cp in [
            Checkpoint::TrimHorizon,
            Checkpoint::Latest,
            Checkpoint::AtTimestamp,
            Checkpoint::ShardEnd,
            at(
                "49590338271490256608559692538361571095921575989136588898",
                3,
            ),
            Checkpoint::Before(
                SequenceNumber::new("49590338271490256608559692538361571095921575989136588898")
                    .unwrap(),
            ),
        ] {
            let back = Checkpoint::from_stored(cp.stored_text(), cp.stored_sub_sequence()).unwrap();
            assert_eq!(back, cp);
        }
    }

    #[test]
    fn stored_form_rejects_garbage() {
        for bad in ["", "trim_horizon", "12a", "-5", "SHARD END"] {
            let err = Checkpoint::from_stored(bad, 0).unwrap_err();
            assert_eq!(err.what(), "checkpoint", "{bad:?}");
        }
        for sub in [-2, i128::MIN, i128::from(u64::MAX) + 1] {
            let err = Checkpoint::from_stored("12", sub).unwrap_err();
            assert_eq!(err.what(), "checkpoint sub-sequence number", "{sub}");
        }
    }

    #[test]
    fn progress_order() {
        use Ordering::*;
        let cases = [
            (Checkpoint::TrimHorizon, Checkpoint::Latest, Equal),
            (Checkpoint::AtTimestamp, at("0", 0), Less),
            (at("9", 5), at("10", 0), Less),
            (at("10", 1), at("10", 0), Greater),
            (at("10", 1), at("10", 1), Equal),
            (at("999999", 0), Checkpoint::ShardEnd, Less),
            (Checkpoint::ShardEnd, Checkpoint::TrimHorizon, Greater),
            (before("10"), at("10", 0), Less),
            (before("10"), at("9", 99), Greater),
            (before("10"), Checkpoint::Latest, Greater),
            (before("10"), before("10"), Equal),
            (before("10"), before("11"), Less),
            (before("999"), Checkpoint::ShardEnd, Less),
        ];
        for (a, b, expected) in cases {
            assert_eq!(a.cmp_progress(&b), expected, "{a} vs {b}");
        }
    }

    #[test]
    fn pending_must_not_be_behind_checkpoint() {
        let ok = CheckpointUpdate::prepare(at("5", 0), PendingCheckpoint::new(at("7", 0), None));
        assert!(ok.validate().is_ok());
        let bad = CheckpointUpdate::prepare(at("7", 0), PendingCheckpoint::new(at("5", 0), None));
        assert!(bad.validate().is_err());
    }
}
