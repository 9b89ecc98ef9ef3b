//! Secrets out of store URLs, for `Debug` output, logs and error messages.

/// What a secret is replaced with.
pub const REDACTED: &str = "***";

/// Query options whose value is a secret (compared without case).
const SECRET_OPTIONS: [&str; 8] = [
    "password",
    "passwd",
    "pass",
    "pwd",
    "sslpassword",
    "auth",
    "token",
    "secret",
];

/// The URL with every secret replaced by `***`: the password of the user part, and the value of
/// query options such as `password=` (`sslpassword`, `pwd`, `token`, …). The user part runs to
/// the **last** `@`, as a password may hold `/`, `?`, `#` or `@` unencoded, which parsers read
/// differently: a wide reading hides too much rather than too little. For `redis://` and
/// `rediss://`, a user part without `:` is hidden whole (it is usually a password put in the
/// wrong place). Text that is not a URL comes back unchanged.
///
/// ```
/// use shardwise_lease_core::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db/leases"), "postgres://app:***@db/leases");
/// assert_eq!(redact_url("postgres://app:pa/ss@db"), "postgres://app:***@db");
/// assert_eq!(redact_url("postgres://db/x?password=s3cret&sslmode=require"), "postgres://db/x?password=***&sslmode=require");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let (scheme, rest) = (&url[..scheme_end], &url[scheme_end + 3..]);
    let redis = scheme.eq_ignore_ascii_case("redis") || scheme.eq_ignore_ascii_case("rediss");
    let rest = match rest.rfind('@') {
        Some(at) => {
            let (user_info, host) = rest.split_at(at);
            match user_info.split_once(':') {
                Some((user, _password)) => format!("{user}:{REDACTED}{host}"),
                None if redis => format!("{REDACTED}{host}"),
                None => rest.to_owned(),
            }
        }
        None => rest.to_owned(),
    };
    format!("{scheme}://{}", redact_query(&rest))
}

/// `name=value` pairs after the first `?`: the values of secret options hidden.
fn redact_query(text: &str) -> String {
    let Some((before, query)) = text.split_once('?') else {
        return text.to_owned();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_OPTIONS.iter().any(|s| name.eq_ignore_ascii_case(s)) => {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    format!("{before}?{}", pairs.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_table() {
        let cases = [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            (
                "postgres://h/db?password=pw&sslmode=require",
                "postgres://h/db?password=***&sslmode=require",
            ),
            (
                "postgresql://h/db?sslmode=require&PassWord=pw",
                "postgresql://h/db?sslmode=require&PassWord=***",
            ),
            ("postgres://u:p@ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u:pa/ss@h/db", "postgres://u:***@h/db"),
            ("postgres://u:pa?ss#x@h/db", "postgres://u:***@h/db"),
            ("postgres://u:pw@h", "postgres://u:***@h"),
            (
                "postgres://u:pa/ss@h/db?sslpassword=key",
                "postgres://u:***@h/db?sslpassword=***",
            ),
            ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
            ("redis://user:pw@h", "redis://user:***@h"),
            ("rediss://pw@h", "rediss://***@h"),
            ("redis://h:6379", "redis://h:6379"),
            ("redis://h/0?password=pw", "redis://h/0?password=***"),
            ("mysql://root:pw@h/db", "mysql://root:***@h/db"),
            ("not a url", "not a url"),
            ("dynamodb://table", "dynamodb://table"),
        ];
        for (url, expected) in cases {
            assert_eq!(redact_url(url), expected, "{url}");
        }
    }
}
