//! The Hottok is a static shared secret, not a signature: all we can do is compare it, in
//! constant time, before anything else happens.
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing Hottok: send it in the X-HOTMART-HOTTOK header")]
    Missing,
    #[error("the Hottok does not match the one saved for this app")]
    Mismatch,
}

/// Both sides are hashed first so the comparison takes the same time whatever their lengths.
pub fn verify_hottok(expected: &str, provided: Option<&str>) -> Result<(), VerifyError> {
    let provided = provided
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or(VerifyError::Missing)?;
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(provided.as_bytes());
    if bool::from(a.ct_eq(&b)) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_exact_token() {
        assert_eq!(verify_hottok("abc123", Some("abc123")), Ok(()));
    }

    #[test]
    fn rejects_missing_empty_and_wrong_tokens() {
        assert_eq!(verify_hottok("abc123", None), Err(VerifyError::Missing));
        assert_eq!(verify_hottok("abc123", Some("  ")), Err(VerifyError::Missing));
        assert_eq!(verify_hottok("abc123", Some("abc124")), Err(VerifyError::Mismatch));
        assert_eq!(verify_hottok("abc123", Some("abc1234")), Err(VerifyError::Mismatch));
        assert_eq!(verify_hottok("abc123", Some("ABC123")), Err(VerifyError::Mismatch));
    }
}
