//! Secrets at rest: AES-256-GCM under the master key. Stored as base64(nonce ‖ ciphertext).
use aes_gcm::aead::{Aead, Generate, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretSlice};

#[derive(Clone)]
pub struct SecretBox {
    key: SecretSlice<u8>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

const NONCE_LEN: usize = 12;

impl SecretBox {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            key: SecretSlice::from(key.to_vec()),
        }
    }

    fn cipher(&self) -> Aes256Gcm {
        let key = Key::<Aes256Gcm>::try_from(self.key.expose_secret()).expect("master key is 32 bytes");
        Aes256Gcm::new(&key)
    }

    pub fn encrypt(&self, plain: &str) -> anyhow::Result<String> {
        let nonce = Nonce::generate();
        let ct = self
            .cipher()
            .encrypt(&nonce, plain.as_bytes())
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(B64.encode(out))
    }

    pub fn decrypt(&self, stored: &str) -> anyhow::Result<String> {
        let raw = B64.decode(stored)?;
        anyhow::ensure!(raw.len() > NONCE_LEN, "stored secret is truncated");
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
        let plain = self
            .cipher()
            .decrypt(&nonce, ct)
            .map_err(|_| anyhow::anyhow!("secret cannot be decrypted (wrong master key?)"))?;
        Ok(String::from_utf8(plain)?)
    }
}

/// The last four characters of a secret: enough for an admin to recognise it, useless to an attacker.
pub fn last4(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_never_stores_plain_text() {
        let b = SecretBox::new([7u8; 32]);
        let enc = b.encrypt("super-secret-token").unwrap();
        assert!(!enc.contains("super-secret"));
        assert_ne!(enc, b.encrypt("super-secret-token").unwrap(), "nonce must differ");
        assert_eq!(b.decrypt(&enc).unwrap(), "super-secret-token");
        let other = SecretBox::new([8u8; 32]);
        assert!(other.decrypt(&enc).is_err());
    }

    #[test]
    fn last4_handles_short_values() {
        assert_eq!(last4("abcdef"), "cdef");
        assert_eq!(last4("ab"), "ab");
    }
}
