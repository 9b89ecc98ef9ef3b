//! Kinesis sequence numbers and the extended (sub-sequence aware) position of a user record.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::InvalidValue;

/// Most digits a sequence number may have. The Kinesis API allows up to 129 (its pattern is
/// `0|([1-9]\d{0,128})`); real ones have 56 today, more than a `u128` holds, so the number is
/// kept as canonical decimal text and compared numerically.
pub const MAX_SEQUENCE_DIGITS: usize = 129;

/// A Kinesis sequence number: a non-negative decimal integer of up to
/// [`MAX_SEQUENCE_DIGITS`] digits, without leading zeros, ordered numerically.
///
/// ```
/// use shardwise_lease_core::SequenceNumber;
/// let small: SequenceNumber = "99".parse()?;
/// let large: SequenceNumber = "100".parse()?;
/// assert!(small < large); // numeric, not lexicographic
/// # Ok::<(), shardwise_lease_core::InvalidValue>(())
/// ```
///
/// Cloning is cheap (the text is shared), so every user record of a KPL aggregate can carry it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(Arc<str>);

impl SequenceNumber {
    /// Validates decimal text as a sequence number.
    pub fn new(text: &str) -> Result<Self, InvalidValue> {
        const WHAT: &str = "sequence number";
        if text.is_empty() {
            return Err(InvalidValue::new(WHAT, text, "must not be empty"));
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidValue::new(
                WHAT,
                text,
                "must contain only decimal digits",
            ));
        }
        if text.len() > 1 && text.starts_with('0') {
            return Err(InvalidValue::new(WHAT, text, "must not have leading zeros"));
        }
        if text.len() > MAX_SEQUENCE_DIGITS {
            return Err(InvalidValue::new(
                WHAT,
                text,
                format!(
                    "has {} digits, at most {MAX_SEQUENCE_DIGITS} are allowed",
                    text.len()
                ),
            ));
        }
        Ok(Self(text.into()))
    }

    /// The decimal text, exactly as Kinesis returned it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        // Canonical decimals (no leading zeros): the longer is larger; equal lengths compare
        // digit by digit.
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.as_bytes().cmp(other.0.as_bytes()))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl FromStr for SequenceNumber {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The position of one user record: the Kinesis record's sequence number plus the index of the
/// user record inside it (the sub-sequence number; 0 for records that were not KPL-aggregated).
/// Ordered by sequence number, then sub-sequence number.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExtendedSequenceNumber {
    /// The Kinesis record's sequence number.
    pub sequence: SequenceNumber,
    /// The user record's index inside a KPL aggregate (0 when not aggregated).
    pub sub_sequence: u64,
}

impl ExtendedSequenceNumber {
    /// A position inside a record.
    pub fn new(sequence: SequenceNumber, sub_sequence: u64) -> Self {
        Self {
            sequence,
            sub_sequence,
        }
    }
}

impl From<SequenceNumber> for ExtendedSequenceNumber {
    fn from(sequence: SequenceNumber) -> Self {
        Self {
            sequence,
            sub_sequence: 0,
        }
    }
}

impl fmt::Display for ExtendedSequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.sequence, self.sub_sequence)
    }
}

impl fmt::Debug for ExtendedSequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn seq(s: &str) -> SequenceNumber {
        SequenceNumber::new(s).unwrap()
    }

    #[test]
    fn validation_table() {
        let real = "49590338271490256608559692538361571095921575989136588898";
        for ok in ["0", "1", "99", real, &"9".repeat(129)] {
            assert!(SequenceNumber::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-1", "1.5", "01", "00", " 1", "１", &"9".repeat(130)] {
            assert!(SequenceNumber::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn extended_orders_by_sequence_then_sub_sequence() {
        let a = ExtendedSequenceNumber::new(seq("99"), 7);
        let b = ExtendedSequenceNumber::new(seq("100"), 0);
        let c = ExtendedSequenceNumber::new(seq("100"), 1);
        assert!(a < b && b < c);
    }

    proptest! {
        #[test]
        fn order_is_numeric(a in any::<u128>(), b in any::<u128>()) {
            prop_assert_eq!(seq(&a.to_string()).cmp(&seq(&b.to_string())), a.cmp(&b));
        }
    }
}
