//! The range of 128-bit hash keys a shard covers.

use std::fmt;

use crate::error::InvalidValue;

/// An inclusive range of 128-bit hash keys, as Kinesis assigns them to shards.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashKeyRange {
    start: u128,
    end: u128,
}

impl HashKeyRange {
    /// The whole key space, `0..=2^128-1`.
    pub const FULL: Self = Self {
        start: 0,
        end: u128::MAX,
    };

    /// A range from `start` to `end`, both included; `start` must not be above `end`.
    pub fn new(start: u128, end: u128) -> Result<Self, InvalidValue> {
        if start > end {
            return Err(InvalidValue::new(
                "hash key range",
                &format!("{start}..={end}"),
                "starts after it ends",
            ));
        }
        Ok(Self { start, end })
    }

    /// Reads the decimal form Kinesis and the KCL use (`startingHashKey`, `endingHashKey`).
    pub fn from_decimal(start: &str, end: &str) -> Result<Self, InvalidValue> {
        let parse = |text: &str| {
            text.parse::<u128>().map_err(|_| {
                InvalidValue::new("hash key", text, "must be a decimal integer below 2^128")
            })
        };
        Self::new(parse(start)?, parse(end)?)
    }

    /// First hash key of the range.
    pub fn start(&self) -> u128 {
        self.start
    }

    /// Last hash key of the range (included).
    pub fn end(&self) -> u128 {
        self.end
    }

    /// Whether `hash_key` falls in the range.
    pub fn contains(&self, hash_key: u128) -> bool {
        self.start <= hash_key && hash_key <= self.end
    }
}

impl fmt::Debug for HashKeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.start, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_table() {
        let max = u128::MAX.to_string();
        assert_eq!(
            HashKeyRange::from_decimal("0", &max).unwrap(),
            HashKeyRange::FULL
        );
        let too_big = "340282366920938463463374607431768211456"; // 2^128
        for (start, end) in [
            ("1", "0"),
            ("0", too_big),
            ("x", "1"),
            ("-1", "3"),
            ("", "1"),
        ] {
            assert!(
                HashKeyRange::from_decimal(start, end).is_err(),
                "{start}..{end}"
            );
        }
    }

    #[test]
    fn contains_is_inclusive() {
        let r = HashKeyRange::new(10, 20).unwrap();
        assert!(r.contains(10) && r.contains(20) && !r.contains(9) && !r.contains(21));
    }
}
