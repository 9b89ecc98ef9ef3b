//! 128-bit hash keys: how Kinesis maps a record to a shard, and shard hash-key ranges.

use std::fmt;

use md5::{Digest, Md5};

/// The hash key Kinesis derives from a partition key: the MD5 digest of the key's UTF-8 bytes,
/// read as an unsigned big-endian 128-bit integer.
///
/// ```
/// use shardwise_kpl_deagg::hash_key_of_partition_key;
/// // MD5("") = d41d8cd98f00b204e9800998ecf8427e
/// assert_eq!(hash_key_of_partition_key(b""), 0xd41d8cd98f00b204e9800998ecf8427e);
/// ```
#[must_use]
pub fn hash_key_of_partition_key(partition_key: &[u8]) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key).into())
}

#[cfg(test)]
thread_local! {
    /// How many partition keys this thread hashed, for the tests that bound the work.
    pub(crate) static HASHED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The hash key the reference consumer (KCL) computes for a partition key that arrived as raw
/// protobuf bytes: those bytes are first decoded as UTF-8 with U+FFFD replacement (as Java does),
/// and the MD5 is taken over the re-encoded string. Identical to
/// [`hash_key_of_partition_key`] for valid UTF-8.
pub(crate) fn hash_key_of_raw_partition_key(partition_key: &[u8]) -> u128 {
    #[cfg(test)]
    HASHED.with(|hashed| hashed.set(hashed.get() + 1));
    match String::from_utf8_lossy(partition_key) {
        std::borrow::Cow::Borrowed(valid) => hash_key_of_partition_key(valid.as_bytes()),
        std::borrow::Cow::Owned(replaced) => hash_key_of_partition_key(replaced.as_bytes()),
    }
}

/// Why an explicit hash key is not usable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum ExplicitHashKeyError {
    /// Not an (optionally signed) string of ASCII decimal digits.
    #[error("explicit hash key is not a decimal integer")]
    NotDecimal,
    /// A decimal integer, but negative or not below 2^128.
    #[error("explicit hash key is outside 0..2^128")]
    OutOfRange,
}

/// Parses an explicit hash key the way the KCL does (`new BigInteger(text)` followed by a range
/// check): an optional `+` or `-` sign, then one or more ASCII digits; leading zeros allowed;
/// `-0` is zero.
///
/// Java's `BigInteger` also accepts non-ASCII Unicode decimal digits (e.g. `٣`); no producer
/// writes those and this function rejects them as [`ExplicitHashKeyError::NotDecimal`].
///
/// ```
/// use shardwise_kpl_deagg::{parse_explicit_hash_key, ExplicitHashKeyError};
/// assert_eq!(parse_explicit_hash_key(b"0042"), Ok(42));
/// assert_eq!(parse_explicit_hash_key(b"340282366920938463463374607431768211455"), Ok(u128::MAX));
/// assert_eq!(parse_explicit_hash_key(b"340282366920938463463374607431768211456"), Err(ExplicitHashKeyError::OutOfRange));
/// assert_eq!(parse_explicit_hash_key(b"-1"), Err(ExplicitHashKeyError::OutOfRange));
/// assert_eq!(parse_explicit_hash_key(b"1e3"), Err(ExplicitHashKeyError::NotDecimal));
/// ```
pub fn parse_explicit_hash_key(text: &[u8]) -> Result<u128, ExplicitHashKeyError> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(ExplicitHashKeyError::NotDecimal);
    }
    let mut value: u128 = 0;
    let mut overflow = false;
    for &digit in digits {
        match value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(digit - b'0')))
        {
            Some(next) => value = next,
            None => overflow = true,
        }
    }
    if overflow || (negative && value != 0) {
        return Err(ExplicitHashKeyError::OutOfRange);
    }
    Ok(value)
}

/// An inclusive range of 128-bit hash keys, as a shard's `HashKeyRange` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashKeyRange {
    start: u128,
    end: u128,
}

/// A [`HashKeyRange`] whose start is above its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("hash key range start {start} is above its end {end}")]
pub struct InvalidHashKeyRange {
    /// The start that was given.
    pub start: u128,
    /// The end that was given.
    pub end: u128,
}

impl HashKeyRange {
    /// Every hash key, `0 ..= 2^128 - 1`: what a shard of a never-resharded one-shard stream
    /// covers, and the range that filters nothing.
    pub const FULL: Self = Self {
        start: 0,
        end: u128::MAX,
    };

    /// The range `start ..= end` (both inclusive, like Kinesis' `StartingHashKey` and
    /// `EndingHashKey`).
    ///
    /// ```
    /// use shardwise_kpl_deagg::HashKeyRange;
    /// let lower_half = HashKeyRange::new(0, u128::MAX / 2)?;
    /// assert!(lower_half.contains(0) && !lower_half.contains(u128::MAX));
    /// assert!(HashKeyRange::new(2, 1).is_err());
    /// # Ok::<(), shardwise_kpl_deagg::InvalidHashKeyRange>(())
    /// ```
    pub const fn new(start: u128, end: u128) -> Result<Self, InvalidHashKeyRange> {
        if start > end {
            return Err(InvalidHashKeyRange { start, end });
        }
        Ok(Self { start, end })
    }

    /// Parses the decimal strings Kinesis returns for a shard's range.
    ///
    /// ```
    /// use shardwise_kpl_deagg::HashKeyRange;
    /// let range = HashKeyRange::from_decimal("0", "340282366920938463463374607431768211455").unwrap();
    /// assert_eq!(range, HashKeyRange::FULL);
    /// ```
    pub fn from_decimal(start: &str, end: &str) -> Result<Self, HashKeyRangeParseError> {
        let parse = |text: &str| {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HashKeyRangeParseError::NotDecimal);
            }
            parse_explicit_hash_key(text.as_bytes()).map_err(|_| HashKeyRangeParseError::OutOfRange)
        };
        Self::new(parse(start)?, parse(end)?).map_err(HashKeyRangeParseError::Inverted)
    }

    /// The first hash key in the range.
    #[must_use]
    pub const fn start(&self) -> u128 {
        self.start
    }

    /// The last hash key in the range (inclusive).
    #[must_use]
    pub const fn end(&self) -> u128 {
        self.end
    }

    /// Whether `hash_key` lies in the range (both ends inclusive).
    #[must_use]
    pub const fn contains(&self, hash_key: u128) -> bool {
        self.start <= hash_key && hash_key <= self.end
    }

    /// Whether this is [`HashKeyRange::FULL`], which filters nothing.
    #[must_use]
    pub const fn is_full(&self) -> bool {
        self.start == 0 && self.end == u128::MAX
    }
}

impl Default for HashKeyRange {
    fn default() -> Self {
        Self::FULL
    }
}

impl fmt::Display for HashKeyRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.start, self.end)
    }
}

/// Why [`HashKeyRange::from_decimal`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashKeyRangeParseError {
    /// A bound is not a string of ASCII decimal digits.
    #[error("hash key bound is not an unsigned decimal integer")]
    NotDecimal,
    /// A bound is not below 2^128.
    #[error("hash key bound is not below 2^128")]
    OutOfRange,
    /// The start is above the end.
    #[error(transparent)]
    Inverted(InvalidHashKeyRange),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ehk_parsing_follows_big_integer() {
        let cases: &[(&[u8], Result<u128, ExplicitHashKeyError>)] = &[
            (b"0", Ok(0)),
            (b"-0", Ok(0)),
            (b"+7", Ok(7)),
            (b"000000000000000000000000000000000000000000001", Ok(1)),
            (b"", Err(ExplicitHashKeyError::NotDecimal)),
            (b"+", Err(ExplicitHashKeyError::NotDecimal)),
            (b"-", Err(ExplicitHashKeyError::NotDecimal)),
            (b" 1", Err(ExplicitHashKeyError::NotDecimal)),
            (b"1 ", Err(ExplicitHashKeyError::NotDecimal)),
            (b"0x10", Err(ExplicitHashKeyError::NotDecimal)),
            (b"--1", Err(ExplicitHashKeyError::NotDecimal)),
            (b"\xff", Err(ExplicitHashKeyError::NotDecimal)),
            (b"-5", Err(ExplicitHashKeyError::OutOfRange)),
            (
                b"99999999999999999999999999999999999999999999999999",
                Err(ExplicitHashKeyError::OutOfRange),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_explicit_hash_key(text),
                *expected,
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn lossy_partition_key_hash_matches_replacement_string() {
        let raw = b"a\xffb";
        assert_eq!(
            hash_key_of_raw_partition_key(raw),
            hash_key_of_partition_key("a\u{fffd}b".as_bytes())
        );
        assert_eq!(
            hash_key_of_raw_partition_key(b"ab"),
            hash_key_of_partition_key(b"ab")
        );
    }

    #[test]
    fn range_parsing() {
        assert_eq!(
            HashKeyRange::from_decimal("-1", "5"),
            Err(HashKeyRangeParseError::NotDecimal)
        );
        assert_eq!(
            HashKeyRange::from_decimal("0", "340282366920938463463374607431768211456"),
            Err(HashKeyRangeParseError::OutOfRange)
        );
        assert!(matches!(
            HashKeyRange::from_decimal("5", "4"),
            Err(HashKeyRangeParseError::Inverted(_))
        ));
        assert_eq!(
            HashKeyRange::from_decimal("3", "3").map(|r| r.contains(3)),
            Ok(true)
        );
    }
}
