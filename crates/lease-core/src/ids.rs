//! Identifiers: lease keys, shard ids and worker ids. Each is validated once, when made.

use std::fmt;
use std::str::FromStr;

use crate::error::InvalidValue;

/// Longest lease key accepted, in bytes. DynamoDB allows 2,048 for a partition key; a key is a
/// shard id or a stream-qualified shard id, far shorter.
pub const MAX_LEASE_KEY_BYTES: usize = 512;

fn check_text(what: &'static str, value: &str, max_bytes: usize) -> Result<(), InvalidValue> {
    if value.is_empty() {
        return Err(InvalidValue::new(what, value, "must not be empty"));
    }
    if value.len() > max_bytes {
        return Err(InvalidValue::new(
            what,
            value,
            format!(
                "is {} bytes long, at most {max_bytes} are allowed",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(InvalidValue::new(
            what,
            value,
            "must not contain control characters",
        ));
    }
    Ok(())
}

macro_rules! text_id {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            #[doc = concat!("Validates and wraps a ", $what, ".")]
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidValue> {
                let value = value.into();
                let check: fn(&str) -> Result<(), InvalidValue> = $check;
                check(&value)?;
                Ok(Self(value))
            }

            #[doc = concat!("The ", $what, " as text.")]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

text_id!(
    /// The key of a lease row: the shard id for an application that reads one stream, or a
    /// stream-qualified shard id when it reads several. Any text of 1 to
    /// [`MAX_LEASE_KEY_BYTES`] bytes without control characters.
    LeaseKey,
    "lease key",
    |v| check_text("lease key", v, MAX_LEASE_KEY_BYTES)
);

text_id!(
    /// A Kinesis shard id, such as `shardId-000000000001`: 1 to 128 characters from
    /// `a-z A-Z 0-9 _ . -`, as the Kinesis API defines it.
    ShardId,
    "shard id",
    |v| {
        check_text("shard id", v, 128)?;
        if v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
            Ok(())
        } else {
            Err(InvalidValue::new("shard id", v, "may contain only a-z, A-Z, 0-9, '_', '.' and '-'"))
        }
    }
);

text_id!(
    /// The identity of a worker (a process consuming the stream): 1 to 256 bytes of text
    /// without control characters. Two live workers must never share one.
    WorkerId,
    "worker id",
    |v| check_text("worker id", v, 256)
);

impl From<ShardId> for LeaseKey {
    /// A shard id is a valid lease key (the single-stream layout the KCL uses).
    fn from(shard: ShardId) -> Self {
        Self(shard.0)
    }
}

impl From<&ShardId> for LeaseKey {
    fn from(shard: &ShardId) -> Self {
        Self(shard.0.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_accept_odd_text_and_refuse_bad_text() {
        for ok in [
            "shardId-000000000001",
            "acct:stream:1:shard/1",
            "ключ-🦀",
            &"k".repeat(512),
        ] {
            assert!(LeaseKey::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a\nb", "nul\0", &"k".repeat(513)] {
            assert!(LeaseKey::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shard_ids_follow_the_kinesis_pattern() {
        assert!(ShardId::new("shardId-000000000001").is_ok());
        assert!(ShardId::new("a.b_c-9").is_ok());
        for bad in ["", "shard id", "shard:1", &"s".repeat(129)] {
            assert!(ShardId::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn debug_is_the_quoted_text() {
        let w = WorkerId::new("w-1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(format!("{w:?}"), "\"w-1\"");
        assert_eq!(w.to_string(), "w-1");
    }
}
