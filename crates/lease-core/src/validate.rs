//! Checkpoint validation: whether an application may checkpoint at a position, decided from
//! values alone before any store is asked.

use std::fmt;

use crate::checkpoint::Checkpoint;
use crate::sequence::ExtendedSequenceNumber;

/// What a shard pipeline knows when its processor asks to checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointBounds<'a> {
    /// The checkpoint stored in the lease (the last one written).
    pub stored: &'a Checkpoint,
    /// The last user record handed to the processor, if any since the lease was taken.
    pub last_delivered: Option<&'a ExtendedSequenceNumber>,
    /// Whether the reader reported the end of the shard and every record was delivered.
    pub shard_end_reached: bool,
}

/// Why a checkpoint request was refused. Every variant is a caller mistake; nothing is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The position is before the stored checkpoint.
    #[error("checkpoint {requested} is before the stored checkpoint {stored}")]
    BeforeStored {
        /// The requested position.
        requested: Checkpoint,
        /// The stored checkpoint.
        stored: Checkpoint,
    },
    /// The position is after the last record delivered to the processor.
    #[error("checkpoint {requested} is beyond the last delivered record ({})", DisplayLast(.last_delivered))]
    BeyondDelivered {
        /// The requested position.
        requested: Checkpoint,
        /// The last delivered record, if any.
        last_delivered: Option<ExtendedSequenceNumber>,
    },
    /// `SHARD_END` requested before the end of the shard was reached and delivered.
    #[error("SHARD_END requested before the end of the shard was reached")]
    ShardNotEnded,
    /// A position requested on a shard already checkpointed at `SHARD_END`.
    #[error("checkpoint {requested} requested on a shard already at SHARD_END")]
    ShardAlreadyEnded {
        /// The requested position.
        requested: Checkpoint,
    },
    /// A starting position (`TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`, before a record) is not a
    /// checkpoint target.
    #[error("{0} is a starting position, not a checkpoint")]
    NotACheckpointTarget(Checkpoint),
}

struct DisplayLast<'a>(&'a Option<ExtendedSequenceNumber>);

impl fmt::Display for DisplayLast<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(last) => fmt::Display::fmt(last, f),
            None => f.write_str("nothing delivered yet"),
        }
    }
}

/// Checks a checkpoint request: monotonic (never before the stored checkpoint; equal is a
/// harmless no-op), never beyond the last delivered record, sub-sequence aware, `SHARD_END` only
/// once the end was reached, and no start sentinels.
///
/// ```
/// use shardwise_lease_core::{validate_checkpoint, Checkpoint, CheckpointBounds, SequenceNumber};
/// let stored = Checkpoint::TrimHorizon;
/// let delivered = Checkpoint::at(SequenceNumber::new("42")?, 0);
/// let bounds = CheckpointBounds {
///     stored: &stored,
///     last_delivered: delivered.position(),
///     shard_end_reached: false,
/// };
/// assert!(validate_checkpoint(&bounds, &delivered).is_ok());
/// assert!(validate_checkpoint(&bounds, &Checkpoint::ShardEnd).is_err());
/// # Ok::<(), shardwise_lease_core::InvalidValue>(())
/// ```
pub fn validate_checkpoint(
    bounds: &CheckpointBounds<'_>,
    requested: &Checkpoint,
) -> Result<(), CheckpointError> {
    match requested {
        Checkpoint::TrimHorizon
        | Checkpoint::Latest
        | Checkpoint::AtTimestamp
        | Checkpoint::Before(_) => Err(CheckpointError::NotACheckpointTarget(requested.clone())),
        Checkpoint::ShardEnd if bounds.stored.is_shard_end() || bounds.shard_end_reached => Ok(()),
        Checkpoint::ShardEnd => Err(CheckpointError::ShardNotEnded),
        Checkpoint::At(_) if bounds.stored.is_shard_end() => {
            Err(CheckpointError::ShardAlreadyEnded {
                requested: requested.clone(),
            })
        }
        Checkpoint::At(position) => {
            if requested.cmp_progress(bounds.stored).is_lt() {
                return Err(CheckpointError::BeforeStored {
                    requested: requested.clone(),
                    stored: bounds.stored.clone(),
                });
            }
            // The largest permitted position: the last delivered record, or the stored
            // checkpoint itself (re-checkpointing it is a no-op) when nothing came since.
            let permitted = match (bounds.last_delivered, bounds.stored.position()) {
                (Some(delivered), Some(stored)) => Some(delivered.max(stored)),
                (delivered, stored) => delivered.or(stored),
            };
            match permitted {
                Some(max) if position <= max => Ok(()),
                _ => Err(CheckpointError::BeyondDelivered {
                    requested: requested.clone(),
                    last_delivered: bounds.last_delivered.cloned(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SequenceNumber;

    fn at(seq: &str, sub: u64) -> Checkpoint {
        Checkpoint::at(SequenceNumber::new(seq).unwrap(), sub)
    }

    #[test]
    fn validation_table() {
        use Checkpoint::{AtTimestamp, Latest, ShardEnd, TrimHorizon};
        type Expect = fn(&Result<(), CheckpointError>) -> bool;
        let ok: Expect = |r| r.is_ok();
        let before: Expect = |r| matches!(r, Err(CheckpointError::BeforeStored { .. }));
        let beyond: Expect = |r| matches!(r, Err(CheckpointError::BeyondDelivered { .. }));
        let not_ended: Expect = |r| matches!(r, Err(CheckpointError::ShardNotEnded));
        let ended: Expect = |r| matches!(r, Err(CheckpointError::ShardAlreadyEnded { .. }));
        let sentinel: Expect = |r| matches!(r, Err(CheckpointError::NotACheckpointTarget(_)));

        // (name, stored, last delivered, shard end reached, requested, expectation)
        type Case = (
            &'static str,
            Checkpoint,
            Option<Checkpoint>,
            bool,
            Checkpoint,
            Expect,
        );
        let cases: Vec<Case> = vec![
            (
                "first checkpoint at the delivered record",
                TrimHorizon,
                Some(at("10", 0)),
                false,
                at("10", 0),
                ok,
            ),
            (
                "checkpoint before the last delivered record",
                TrimHorizon,
                Some(at("10", 0)),
                false,
                at("5", 0),
                ok,
            ),
            (
                "beyond the last delivered record",
                TrimHorizon,
                Some(at("10", 0)),
                false,
                at("11", 0),
                beyond,
            ),
            (
                "nothing delivered, nothing stored",
                Latest,
                None,
                false,
                at("1", 0),
                beyond,
            ),
            (
                "numeric, not lexicographic: 9 then 10",
                at("9", 0),
                Some(at("10", 0)),
                false,
                at("10", 0),
                ok,
            ),
            (
                "backwards: 100 then 99",
                at("100", 0),
                Some(at("120", 0)),
                false,
                at("99", 0),
                before,
            ),
            (
                "same as stored is a no-op",
                at("100", 2),
                None,
                false,
                at("100", 2),
                ok,
            ),
            (
                "sub-sequence forward inside an aggregate",
                at("100", 2),
                Some(at("100", 5)),
                false,
                at("100", 3),
                ok,
            ),
            (
                "sub-sequence backwards inside an aggregate",
                at("100", 2),
                Some(at("100", 5)),
                false,
                at("100", 1),
                before,
            ),
            (
                "sub-sequence beyond the delivered sub-record",
                at("100", 2),
                Some(at("100", 5)),
                false,
                at("100", 6),
                beyond,
            ),
            (
                "SHARD_END after the end was reached",
                at("100", 0),
                Some(at("100", 0)),
                true,
                ShardEnd,
                ok,
            ),
            (
                "SHARD_END on an empty closed shard",
                TrimHorizon,
                None,
                true,
                ShardEnd,
                ok,
            ),
            (
                "SHARD_END before the end",
                at("100", 0),
                Some(at("200", 0)),
                false,
                ShardEnd,
                not_ended,
            ),
            (
                "SHARD_END again is a no-op",
                ShardEnd,
                None,
                false,
                ShardEnd,
                ok,
            ),
            (
                "position after SHARD_END",
                ShardEnd,
                Some(at("5", 0)),
                true,
                at("5", 0),
                ended,
            ),
            (
                "TRIM_HORIZON is no target",
                at("5", 0),
                Some(at("5", 0)),
                false,
                TrimHorizon,
                sentinel,
            ),
            (
                "LATEST is no target",
                TrimHorizon,
                None,
                false,
                Latest,
                sentinel,
            ),
            (
                "AT_TIMESTAMP is no target",
                TrimHorizon,
                None,
                false,
                AtTimestamp,
                sentinel,
            ),
        ];
        for (name, stored, delivered, end, requested, expect) in cases {
            let bounds = CheckpointBounds {
                stored: &stored,
                last_delivered: delivered.as_ref().and_then(Checkpoint::position),
                shard_end_reached: end,
            };
            let result = validate_checkpoint(&bounds, &requested);
            assert!(expect(&result), "{name}: {result:?}");
        }
    }

    #[test]
    fn errors_read_well() {
        let err = CheckpointError::BeyondDelivered {
            requested: at("11", 0),
            last_delivered: None,
        };
        assert_eq!(
            err.to_string(),
            "checkpoint 11/0 is beyond the last delivered record (nothing delivered yet)"
        );
    }
}
