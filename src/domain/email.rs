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
        // Control characters (a NUL above all) are refused here, so both databases see the same
        // input the same way: PostgreSQL cannot store a NUL in text at all.
        if local.is_empty()
            || domain.is_empty()
            || domain.contains('@')
            || s.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("{raw:?} is not an e-mail address"));
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
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
    fn rejects_non_addresses() {
        for bad in ["", "   ", "ana", "@x.com", "ana@", "a b@x.com", "a@b@c"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
