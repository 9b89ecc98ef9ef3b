//! The key prefix: validated once; every key of one application starts with it as a hash tag.

use std::fmt;

use shardwise_lease_core::{StoreError, StoreErrorKind};

/// Longest prefix accepted, in bytes.
pub const MAX_PREFIX_BYTES: usize = 128;

/// The prefix of every key one application (or one application and stream) uses:
/// 1 to [`MAX_PREFIX_BYTES`] characters from `A-Z a-z 0-9 _ . : -`.
///
/// Keys are `{prefix}:lease:<lease key>` and `{prefix}:leases` (the index). The braces make the
/// prefix the hash tag, so all of an application's keys share one Redis Cluster slot and one
/// script may touch them together. The character rule excludes braces (which would change the
/// tag), quotes, spaces, semicolons and anything else with a meaning to Redis or Lua.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Validates `prefix`; errors are of kind [`StoreErrorKind::Config`].
    pub fn new(prefix: &str) -> Result<Self, StoreError> {
        let valid = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_BYTES
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if valid {
            Ok(Self(prefix.to_owned()))
        } else {
            Err(StoreError::new(
                StoreErrorKind::Config,
                format!(
                    "invalid key prefix {prefix:?}: must be 1 to {MAX_PREFIX_BYTES} characters \
                     from A-Z, a-z, 0-9, '_', '.', ':' and '-'"
                ),
            ))
        }
    }

    /// The prefix as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of one lease's hash.
    pub(crate) fn lease_key(&self, key: &str) -> String {
        format!("{{{}}}:lease:{key}", self.0)
    }

    /// The key of the sorted set indexing every lease key (all scores 0, so it sorts bytewise).
    pub(crate) fn index_key(&self) -> String {
        format!("{{{}}}:leases", self.0)
    }

    /// The membership hash: one field per worker (its heartbeat), and the field `""` (no
    /// worker id is empty) for the table version.
    pub(crate) fn members_key(&self) -> String {
        format!("{{{}}}:members", self.0)
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_table() {
        for ok in ["app", "orders-app:orders", "A.b_c-9", &"p".repeat(128)] {
            assert!(KeyPrefix::new(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a{b",
            "a}b",
            "{a}",
            "a'b",
            "a\"b",
            "a;b",
            "a]]..b",
            "a\nb",
            "a--[[b",
            "ключ",
            "a*b",
            "a\\b",
            &"p".repeat(129),
        ] {
            assert!(KeyPrefix::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_carry_the_prefix_as_hash_tag() {
        let prefix = KeyPrefix::new("app").map_err(|e| e.to_string());
        let prefix = prefix
            .as_ref()
            .map(|p| (p.lease_key("x {y}"), p.index_key()));
        assert_eq!(
            prefix,
            Ok(("{app}:lease:x {y}".to_owned(), "{app}:leases".to_owned()))
        );
    }
}
