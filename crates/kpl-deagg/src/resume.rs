//! Resuming inside an aggregate after a checkpoint.
//!
//! A checkpoint is an extended sequence number: the Kinesis sequence number of a record and the
//! sub-sequence number of the last user record processed from it. Kinesis sequence numbers are
//! decimal strings of up to 129 digits (today's have 56, already more than a `u128` holds), so
//! they are compared as strings here and never converted to integers.

use std::cmp::Ordering;

/// A string that is not a Kinesis sequence number (`0` or up to 129 decimal digits without
/// leading zeros).
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error)]
#[error("not a Kinesis sequence number: {0:?}")]
pub struct InvalidSequenceNumber(pub String);

/// The longest sequence number Kinesis allows.
const MAX_DIGITS: usize = 129;

fn validate(sequence_number: &str) -> Result<&[u8], InvalidSequenceNumber> {
    let digits = sequence_number.as_bytes();
    let well_formed = !digits.is_empty()
        && digits.len() <= MAX_DIGITS
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits.first() != Some(&b'0'));
    if well_formed {
        Ok(digits)
    } else {
        Err(InvalidSequenceNumber(sequence_number.to_owned()))
    }
}

/// Orders two Kinesis sequence numbers numerically.
///
/// ```
/// use std::cmp::Ordering;
/// use shardwise_kpl_deagg::compare_sequence_numbers;
/// let a = "49590338271490256608559692538361571095921575989136588898";
/// let b = "49590338271490256608559692540925702759324208523137515618";
/// assert_eq!(compare_sequence_numbers(a, b), Ok(Ordering::Less));
/// assert_eq!(compare_sequence_numbers("9", "10"), Ok(Ordering::Less));
/// assert!(compare_sequence_numbers("12a", "1").is_err());
/// ```
///
/// # Errors
/// If either string is not a sequence number.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Result<Ordering, InvalidSequenceNumber> {
    let (a, b) = (validate(a)?, validate(b)?);
    // Without leading zeros, a longer number is a larger one.
    Ok(a.len().cmp(&b.len()).then_with(|| a.cmp(b)))
}

/// Where processing stopped: the extended sequence number of the last user record processed.
///
/// ```
/// use bytes::Bytes;
/// use shardwise_kpl_deagg::{Deaggregator, ResumePoint};
///
/// let checkpoint = ResumePoint::new("49590338271490256608559692538361571095921575989136588898", 41)?;
/// // The shard iterator is AT_SEQUENCE_NUMBER of the checkpoint, so the first record read is
/// // the checkpointed one: skip its sub-records 0..=41.
/// let skip = checkpoint.skip_through("49590338271490256608559692538361571095921575989136588898")?;
/// assert_eq!(skip, Some(41));
/// // Later records are delivered whole.
/// assert_eq!(checkpoint.skip_through("49590338271490256608559692540925702759324208523137515618")?, None);
///
/// let deaggregator = Deaggregator::new();
/// let data = Bytes::from_static(b"not an aggregate");
/// let out = deaggregator.deaggregate_into("pk", data, skip, &mut Vec::new());
/// assert_eq!(out.map(|report| report.skipped_by_resume), Ok(1));
/// # Ok::<(), shardwise_kpl_deagg::InvalidSequenceNumber>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResumePoint {
    sequence_number: String,
    sub_sequence_number: u64,
}

impl ResumePoint {
    /// A resume point after the user record with this sequence and sub-sequence number.
    ///
    /// # Errors
    /// If `sequence_number` is not a Kinesis sequence number.
    pub fn new(
        sequence_number: impl Into<String>,
        sub_sequence_number: u64,
    ) -> Result<Self, InvalidSequenceNumber> {
        let sequence_number = sequence_number.into();
        validate(&sequence_number)?;
        Ok(Self {
            sequence_number,
            sub_sequence_number,
        })
    }

    /// The sequence number of the Kinesis record the checkpoint points into.
    #[must_use]
    pub fn sequence_number(&self) -> &str {
        &self.sequence_number
    }

    /// The sub-sequence number of the last user record processed in that Kinesis record.
    #[must_use]
    pub const fn sub_sequence_number(&self) -> u64 {
        self.sub_sequence_number
    }

    /// What to skip of the Kinesis record with this sequence number, ready to pass to
    /// [`crate::Deaggregator::deaggregate_into`]: `Some(n)` skips sub-records `0..=n` (`n` is
    /// `u64::MAX` for a record before the checkpoint, which is skipped whole), `None` skips
    /// nothing.
    ///
    /// # Errors
    /// If `record_sequence_number` is not a Kinesis sequence number.
    pub fn skip_through(
        &self,
        record_sequence_number: &str,
    ) -> Result<Option<u64>, InvalidSequenceNumber> {
        Ok(
            match compare_sequence_numbers(record_sequence_number, &self.sequence_number)? {
                Ordering::Less => Some(u64::MAX),
                Ordering::Equal => Some(self.sub_sequence_number),
                Ordering::Greater => None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_number_syntax() {
        for good in ["0", "7", &"9".repeat(129)] {
            assert!(validate(good).is_ok(), "{good}");
        }
        for bad in ["", "01", "-1", "1.0", " 1", &"9".repeat(130)] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_sequence_numbers_compare_numerically() {
        let long = format!("1{}", "0".repeat(100));
        let longer = format!("1{}", "0".repeat(101));
        assert_eq!(compare_sequence_numbers(&long, &longer), Ok(Ordering::Less));
        assert_eq!(
            compare_sequence_numbers(&longer, &long),
            Ok(Ordering::Greater)
        );
        assert_eq!(compare_sequence_numbers(&long, &long), Ok(Ordering::Equal));
    }

    #[test]
    fn skip_through_by_position() {
        let point = ResumePoint::new("500", 3).unwrap();
        assert_eq!(point.skip_through("499"), Ok(Some(u64::MAX)));
        assert_eq!(point.skip_through("500"), Ok(Some(3)));
        assert_eq!(point.skip_through("501"), Ok(None));
        assert!(point.skip_through("x").is_err());
        assert!(ResumePoint::new("007", 0).is_err());
    }
}
