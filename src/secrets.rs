//! Secrets at rest: AES-256-GCM under the master key.
//!
//! Stored as `v2:<key id>:<base64(nonce ‖ ciphertext)>`. The ciphertext is bound to where it lives
//! (associated data `porteiro:<app id>:<field>`), so a value copied into another app's row or
//! another field does not decrypt. The key id (the first 8 hex digits of SHA-256 of the key)
//! says which master key encrypted it, so the master key can be rotated: the ring keeps older
//! keys for decrypting only. Values written before key ids existed (bare base64, no associated
//! data) are still read, and `porteiro keys rotate-master` rewrites them in the new form.
use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::{Digest, Sha256};

#[derive(Clone)]
struct MasterKey {
    id: String,
    key: SecretSlice<u8>,
}

impl MasterKey {
    fn new(key: [u8; 32]) -> Self {
        MasterKey {
            id: key_id(&key),
            key: SecretSlice::from(key.to_vec()),
        }
    }

    fn cipher(&self) -> Aes256Gcm {
        let key = Key::<Aes256Gcm>::try_from(self.key.expose_secret()).expect("master key is 32 bytes");
        Aes256Gcm::new(&key)
    }
}

/// The public name of a master key: safe to log and to store next to what it encrypted.
pub fn key_id(key: &[u8; 32]) -> String {
    hex::encode(&Sha256::digest(key)[..4])
}

/// Where a secret lives: the associated data its ciphertext is bound to.
#[derive(Debug, Clone, Copy)]
pub struct Slot<'a> {
    pub app_id: i32,
    pub field: &'a str,
}

impl Slot<'_> {
    fn aad(&self) -> String {
        format!("porteiro:{}:{}", self.app_id, self.field)
    }
}

/// The current master key (encrypts and decrypts) and older ones (decrypt only).
#[derive(Clone)]
pub struct SecretBox {
    current: MasterKey,
    older: Vec<MasterKey>,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBox(current key {})", self.current.id)
    }
}

const NONCE_LEN: usize = 12;
const PREFIX: &str = "v2:";

impl SecretBox {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            current: MasterKey::new(key),
            older: Vec::new(),
        }
    }

    /// Adds keys that may still have encrypted stored values (a rotation in progress or done).
    pub fn with_older(mut self, keys: impl IntoIterator<Item = [u8; 32]>) -> Self {
        for k in keys {
            let k = MasterKey::new(k);
            if k.id != self.current.id && !self.older.iter().any(|o| o.id == k.id) {
                self.older.push(k);
            }
        }
        self
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    pub fn encrypt(&self, plain: &str, slot: Slot<'_>) -> anyhow::Result<String> {
        let nonce = Nonce::generate();
        let aad = slot.aad();
        let ct = self
            .current
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| anyhow::anyhow!("encryption failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!("{PREFIX}{}:{}", self.current.id, B64.encode(out)))
    }

    pub fn decrypt(&self, stored: &str, slot: Slot<'_>) -> anyhow::Result<String> {
        let (key, body, aad) = match stored.strip_prefix(PREFIX) {
            Some(rest) => {
                let (id, body) = rest
                    .split_once(':')
                    .ok_or_else(|| anyhow::anyhow!("stored secret has no key id"))?;
                let key = std::iter::once(&self.current)
                    .chain(&self.older)
                    .find(|k| k.id == id)
                    .ok_or_else(|| {
                        anyhow::anyhow!("stored secret was encrypted with master key {id}, which is not configured")
                    })?;
                (key, body, slot.aad())
            }
            // Written before key ids: the current key, no associated data.
            None => (&self.current, stored, String::new()),
        };
        let raw = B64.decode(body)?;
        anyhow::ensure!(raw.len() > NONCE_LEN, "stored secret is truncated");
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| anyhow::anyhow!("bad nonce"))?;
        let plain = key
            .cipher()
            .decrypt(
                &nonce,
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .or_else(|_| {
                // A legacy value may also have been written under an older key.
                if aad.is_empty() {
                    self.older
                        .iter()
                        .find_map(|k| k.cipher().decrypt(&nonce, ct).ok())
                        .ok_or(())
                } else {
                    Err(())
                }
            })
            .map_err(|_| {
                anyhow::anyhow!(
                    "secret cannot be decrypted (wrong master key, or a value moved from another app or field)"
                )
            })?;
        Ok(String::from_utf8(plain)?)
    }

    /// Whether a stored value is already in the current form under the current key.
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(PREFIX)
            .and_then(|r| r.split_once(':'))
            .is_some_and(|(id, _)| id == self.current.id)
    }
}

/// The last four characters of a secret: enough for an admin to recognise it, useless to an attacker.
/// How a bearer secret with 256 random bits (an API key, a console token) is stored: its
/// SHA-256, hex. A fast hash is enough at that entropy; the secret itself is never kept.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

pub fn last4(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars[chars.len().saturating_sub(4)..].iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT: Slot<'static> = Slot {
        app_id: 1,
        field: "hottok",
    };

    #[test]
    fn round_trips_and_never_stores_plain_text() {
        let b = SecretBox::new([7u8; 32]);
        let enc = b.encrypt("super-secret-token", SLOT).unwrap();
        assert!(!enc.contains("super-secret"));
        assert!(enc.starts_with(&format!("v2:{}:", b.current_key_id())));
        assert_ne!(enc, b.encrypt("super-secret-token", SLOT).unwrap(), "nonce must differ");
        assert_eq!(b.decrypt(&enc, SLOT).unwrap(), "super-secret-token");
        let other = SecretBox::new([8u8; 32]);
        assert!(other.decrypt(&enc, SLOT).is_err());
    }

    #[test]
    fn values_cannot_be_swapped_between_apps_or_fields() {
        let b = SecretBox::new([7u8; 32]);
        let enc = b.encrypt("secret", SLOT).unwrap();
        assert!(
            b.decrypt(
                &enc,
                Slot {
                    app_id: 2,
                    field: "hottok"
                }
            )
            .is_err()
        );
        assert!(
            b.decrypt(
                &enc,
                Slot {
                    app_id: 1,
                    field: "client_secret"
                }
            )
            .is_err()
        );
    }

    #[test]
    fn older_keys_still_decrypt_after_a_rotation_and_legacy_values_are_read() {
        let old = SecretBox::new([1u8; 32]);
        let enc = old.encrypt("secret", SLOT).unwrap();
        let rotated = SecretBox::new([2u8; 32]).with_older([[1u8; 32]]);
        assert_eq!(rotated.decrypt(&enc, SLOT).unwrap(), "secret");
        assert!(!rotated.is_current(&enc));
        assert!(rotated.is_current(&rotated.encrypt("secret", SLOT).unwrap()));
        // The form written before key ids: bare base64 of nonce ‖ ciphertext, no associated data.
        let nonce = Nonce::generate();
        let ct = MasterKey::new([1u8; 32])
            .cipher()
            .encrypt(&nonce, b"legacy".as_ref())
            .unwrap();
        let legacy = B64.encode([nonce.to_vec(), ct].concat());
        assert_eq!(rotated.decrypt(&legacy, SLOT).unwrap(), "legacy");
        assert_eq!(old.decrypt(&legacy, SLOT).unwrap(), "legacy");
    }

    #[test]
    fn last4_handles_short_values() {
        assert_eq!(last4("abcdef"), "cdef");
        assert_eq!(last4("ab"), "ab");
    }
}
