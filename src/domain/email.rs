use std::fmt;

/// A buyer's e-mail, trimmed and lower-cased once, at the edge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim().to_lowercase();
        if s.is_empty() {
            return Err("e-mail is empty".into());
        }
        if s.len() > 254 {
            return Err("e-mail is longer than 254 characters".into());
        }
        let Some((local, domain)) = s.split_once('@') else {
            return Err(format!("{raw:?} is not an e-mail address (no @)"));
        };
        // An address as RFC 5321 writes it (a dot-atom before the @, a host name after; letters
        // of any script, RFC 6531), without quoted local parts or address literals, which no
        // checkout produces. Control characters (a NUL above all) never pass, so both databases
        // see the same input the same way: PostgreSQL cannot store a NUL in text at all.
        if !dot_atom(local) || !host_name(domain) {
            return Err(format!("{raw:?} is not an e-mail address"));
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `atext *("." atext)`, at most 64 characters.
fn dot_atom(local: &str) -> bool {
    local.len() <= 64
        && local.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c))
        })
}

/// Labels of letters, digits and inner hyphens, 1 to 63 characters each, joined by dots.
fn host_name(domain: &str) -> bool {
    domain.len() <= 253
        && domain.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_spaces() {
        assert_eq!(
            Email::parse("  Ana.Silva@Example.COM ").unwrap().as_str(),
            "ana.silva@example.com"
        );
    }

    #[test]
    fn accepts_what_checkouts_send() {
        for good in [
            "ana@x.com",
            "ana.silva+hotmart@mail.example.com.br",
            "o'neil@x.io",
            "joão@exemplo.com.br",
            "a@localhost",
            "user_1-x@sub-domain.x.com",
        ] {
            assert!(Email::parse(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn rejects_non_addresses() {
        for bad in [
            "",
            "   ",
            "ana",
            "@x.com",
            "ana@",
            "a b@x.com",
            "a@b@c",
            ",./;'[]\\-=<>?:\"{}|_+!@#$%^&*()`~",
            "ana..silva@x.com",
            ".ana@x.com",
            "ana@x..com",
            "ana@-x.com",
            "ana@x_y.com",
            "\"ana\"@x.com",
            "ana@[127.0.0.1]",
            "ana\u{0}@x.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
