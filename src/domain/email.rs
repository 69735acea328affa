use std::fmt;

/// A buyer's e-mail, trimmed and lower-cased once, at the edge.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let s = raw.trim();
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
        Ok(Email(s.to_lowercase()))
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
                    .all(|c| c.is_alphabetic() || c.is_ascii_digit() || "!#$%&'*+-/=?^_`{|}~".contains(c))
        })
}

/// Labels of ASCII letters, digits and inner hyphens, 1 to 63 characters each, joined by dots. A
/// domain in another script must be a valid internationalised name (IDNA 2008, UTS 46 strict,
/// which also checks bidirectional text), judged on its ASCII form.
fn host_name(domain: &str) -> bool {
    let ascii_host = |d: &str| {
        d.len() <= 253
            && d.split('.').all(|label| {
                (1..=63).contains(&label.len())
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
    };
    if domain.is_ascii() {
        return ascii_host(domain);
    }
    // Written as it should be: what IDNA would change (case, compatibility forms) is refused,
    // so the name converts and converts back to itself.
    !domain.split('.').any(str::is_empty)
        && domain.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || c == '-'
                || c == '.'
                // Letters; not letter-numbers nor the CJK repeat marks, which IDNA 2008 disallows.
                || (c.is_alphabetic() && !c.is_numeric() && !matches!(c, '\u{3031}'..='\u{3035}' | '\u{303b}'))
        })
        && idna::domain_to_ascii_strict(domain).is_ok_and(|a| ascii_host(&a) && idna::domain_to_unicode(&a).0 == domain)
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prints, for each line of `$EMAIL_CANDIDATES`, whether it parses (a cross-check against
    /// another validator, run by hand).
    #[test]
    #[ignore = "a manual cross-check"]
    fn print_verdicts() {
        let Ok(path) = std::env::var("EMAIL_CANDIDATES") else {
            return;
        };
        for line in std::fs::read_to_string(path).unwrap().lines() {
            println!("{}\t{}", u8::from(Email::parse(line).is_ok()), line);
        }
    }

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
    fn internationalised_domains_follow_idna() {
        for ok in [
            "josé@açaí.com.br",
            "g@üoñyédêdz",
            "ana@xn--aa-1la.com",
            "μαρία@παράδειγμα.ελ",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
        // Upper case IDNA would map, a letter-number, Arabic-Indic digits, an empty label.
        for bad in ["a@xႢy.com", "a@xↂy.com", "a@١٢٣.com", "a@ação..com"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Email::parse("Ana@Example.COM").unwrap().as_str(), "ana@example.com");
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
