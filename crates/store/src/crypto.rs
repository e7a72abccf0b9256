//! Personal data protection: resident ID numbers and bank accounts are
//! encrypted with AES-256-GCM, found again through an HMAC-SHA-256 blind
//! index, and hospital API keys are stored only as their SHA-256 hash.
//!
//! The keys ([`DataKeys`]) come from configuration or the environment, never
//! from the database, so that a copy of the database alone reveals no
//! personal data.

use std::fmt;

use aes_gcm::aead::{Aead, Nonce, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Bytes of each of the two keys in [`DataKeys`].
pub const KEY_BYTES: usize = 32;

/// Bytes of the random nonce at the start of every ciphertext.
pub const NONCE_BYTES: usize = 12;

/// Bytes of the authentication tag at the end of every ciphertext.
pub const TAG_BYTES: usize = 16;

/// The version prefix of the key text ([`DataKeys::encoded`]).
const KEY_TEXT_PREFIX: &str = "v1:";

/// The prefix of every hospital API key.
pub const API_KEY_PREFIX: &str = "jz_";

/// Bytes of randomness in an API key.
const API_KEY_RANDOM_BYTES: usize = 32;

/// What a value is: it is bound into every ciphertext as associated data and
/// into every blind index, so that a ciphertext or an index cannot be moved
/// from one column to another (a bank account presented as a resident ID
/// fails to decrypt, and equal text in two columns has unrelated indexes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A resident ID number (居民身份证号), in its canonical text.
    ResidentId,
    /// A bank account number, digits only.
    BankAccount,
    /// A mobile phone number, digits only.
    Phone,
    /// A message that holds a secret (a one-time code) and where it goes,
    /// sealed in the outbox until it is sent.
    Message,
}

impl Purpose {
    /// The label bound into ciphertexts and indexes. Stored data depends on
    /// these bytes: never change one, add a new purpose instead.
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::ResidentId => b"jiuzhu/resident-id/v1",
            Purpose::BankAccount => b"jiuzhu/bank-account/v1",
            Purpose::Phone => b"jiuzhu/phone/v1",
            Purpose::Message => b"jiuzhu/message/v1",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Purpose::ResidentId => "resident ID number",
            Purpose::BankAccount => "bank account number",
            Purpose::Phone => "phone number",
            Purpose::Message => "sealed message",
        })
    }
}

/// Why encryption, decryption or generating a key failed.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The operating system gave no random bytes; nothing was encrypted or
    /// generated.
    #[error("the operating system's random number generator failed: {0}")]
    Randomness(getrandom::Error),
    /// Beyond AES-GCM's limit of 64 GiB per message; never a real value.
    #[error("a value of {length} bytes is too long to encrypt")]
    TooLong { length: usize },
    /// Too short to hold a nonce and a tag: not a ciphertext of this module.
    #[error("the encrypted {purpose} is {length} bytes, shorter than the {minimum} bytes of nonce and tag")]
    Truncated {
        purpose: Purpose,
        length: usize,
        minimum: usize,
    },
    /// The tag does not match: the bytes were changed, belong to another
    /// purpose (column), or were encrypted under another key.
    #[error(
        "the encrypted {purpose} does not authenticate: it was changed, belongs to another column, \
         or was encrypted under another key"
    )]
    Inauthentic { purpose: Purpose },
}

/// Why a key text was refused by [`DataKeys::from_encoded`]. The messages
/// never repeat the text, which may be a real key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    #[error("no data key given: set one in the configuration or the environment")]
    Empty,
    #[error("the data key must start with \"v1:\" (the only key format known)")]
    WrongPrefix,
    #[error("the data key after \"v1:\" is not valid base64 (standard alphabet, with padding)")]
    BadBase64,
    #[error(
        "the data key must hold 64 bytes (32 to encrypt, 32 for the look-up index); this one holds {length}"
    )]
    WrongLength { length: usize },
}

/// The two secrets that protect personal data: a key to encrypt
/// (AES-256-GCM) and a key for the blind index (HMAC-SHA-256).
///
/// `Debug` prints `DataKeys(…)`, never the bytes; there is no `Display`.
/// The only way to see the key is [`DataKeys::encoded`], meant for writing it
/// once into a configuration file or secret store.
#[derive(Clone)]
pub struct DataKeys {
    encryption_key: [u8; KEY_BYTES],
    index_key: [u8; KEY_BYTES],
    cipher: Aes256Gcm,
    index_mac: Hmac<Sha256>,
}

impl fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKeys(…)")
    }
}

impl DataKeys {
    /// Builds the keys from their bytes.
    pub fn from_bytes(encryption_key: [u8; KEY_BYTES], index_key: [u8; KEY_BYTES]) -> DataKeys {
        let cipher = Aes256Gcm::new(&encryption_key.into());
        // HMAC accepts keys of every length (RFC 2104 hashes long keys and
        // pads short ones), so this cannot fail; `new_from_slice` returns a
        // `Result` only because it is shared with ciphers that have fixed
        // key lengths.
        let index_mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&index_key).expect("HMAC accepts keys of any length");
        DataKeys {
            encryption_key,
            index_key,
            cipher,
            index_mac,
        }
    }

    /// New random keys from the operating system's random number generator.
    pub fn generate() -> Result<DataKeys, CryptoError> {
        let mut bytes = [0u8; 2 * KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(CryptoError::Randomness)?;
        Ok(DataKeys::from_key_bytes(&bytes))
    }

    /// Reads the text form written by [`DataKeys::encoded`]: `v1:` then the
    /// standard base64 (padded) of 64 bytes, the encryption key then the
    /// index key. Whitespace around the text is ignored, so that a value
    /// read from a file with its final newline is accepted.
    pub fn from_encoded(text: &str) -> Result<DataKeys, KeyTextError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyTextError::Empty);
        }
        let encoded = text
            .strip_prefix(KEY_TEXT_PREFIX)
            .ok_or(KeyTextError::WrongPrefix)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| KeyTextError::BadBase64)?;
        let bytes: &[u8; 2 * KEY_BYTES] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyTextError::WrongLength { length: bytes.len() })?;
        Ok(DataKeys::from_key_bytes(bytes))
    }

    /// The keys as one line of text for a configuration file or an
    /// environment variable; [`DataKeys::from_encoded`] reads it back.
    /// This is the secret itself: write it only where secrets belong.
    pub fn encoded(&self) -> String {
        let mut bytes = [0u8; 2 * KEY_BYTES];
        bytes[..KEY_BYTES].copy_from_slice(&self.encryption_key);
        bytes[KEY_BYTES..].copy_from_slice(&self.index_key);
        format!("{KEY_TEXT_PREFIX}{}", STANDARD.encode(bytes))
    }

    fn from_key_bytes(bytes: &[u8; 2 * KEY_BYTES]) -> DataKeys {
        let mut encryption_key = [0u8; KEY_BYTES];
        let mut index_key = [0u8; KEY_BYTES];
        encryption_key.copy_from_slice(&bytes[..KEY_BYTES]);
        index_key.copy_from_slice(&bytes[KEY_BYTES..]);
        DataKeys::from_bytes(encryption_key, index_key)
    }

    /// Encrypts `plaintext` as a value of `purpose`: AES-256-GCM under a
    /// fresh random 96-bit nonce, with the purpose's label as associated
    /// data. The result is `nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`,
    /// 28 bytes longer than the plaintext; two encryptions of the same value
    /// differ.
    ///
    /// Random nonces are safe for far more values than Jiuzhu will hold
    /// under one key (the limit is about 2³² messages per key).
    pub fn encrypt(&self, purpose: Purpose, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(CryptoError::Randomness)?;
        let sealed = self
            .cipher
            .encrypt(
                &Nonce::<Aes256Gcm>::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: purpose.label(),
                },
            )
            .map_err(|_| CryptoError::TooLong {
                length: plaintext.len(),
            })?;
        let mut out = Vec::with_capacity(NONCE_BYTES + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what [`DataKeys::encrypt`] produced for the same `purpose`.
    /// Fails if any byte was changed, if the value was encrypted for another
    /// purpose, or under another key.
    pub fn decrypt(&self, purpose: Purpose, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let minimum = NONCE_BYTES + TAG_BYTES;
        let truncated = CryptoError::Truncated {
            purpose,
            length: data.len(),
            minimum,
        };
        if data.len() < minimum {
            return Err(truncated);
        }
        let (nonce, sealed) = data.split_first_chunk::<NONCE_BYTES>().ok_or(truncated)?;
        self.cipher
            .decrypt(
                &Nonce::<Aes256Gcm>::from(*nonce),
                Payload {
                    msg: sealed,
                    aad: purpose.label(),
                },
            )
            .map_err(|_| CryptoError::Inauthentic { purpose })
    }

    /// The blind index of `value` as a `purpose`: HMAC-SHA-256 under the
    /// index key of `label(purpose) ‖ 0x00 ‖ value`. Equal values give equal
    /// indexes, so a row is found by exact match without decrypting; the
    /// index reveals nothing to whoever lacks the key. Pass values in one
    /// canonical form (a resident ID's canonical text), or equal values will
    /// not match.
    pub fn blind_index(&self, purpose: Purpose, value: &[u8]) -> [u8; 32] {
        let mut mac = self.index_mac.clone();
        mac.update(purpose.label());
        mac.update(&[0]);
        mac.update(value);
        mac.finalize().into_bytes().into()
    }
}

/// A hospital API key as issued: `jz_` then the unpadded base64url of 32
/// random bytes (46 characters). It is shown to the hospital once and never
/// stored; the store keeps only its [`ApiKeyHash`]. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(…)")
    }
}

impl ApiKey {
    /// A new random key and the hash to store for it.
    pub fn generate() -> Result<(ApiKey, ApiKeyHash), CryptoError> {
        let mut random = [0u8; API_KEY_RANDOM_BYTES];
        getrandom::fill(&mut random).map_err(CryptoError::Randomness)?;
        let key = ApiKey(format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random)));
        let hash = ApiKeyHash::of(key.as_str());
        Ok((key, hash))
    }

    /// The key's text, to show to its holder once.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's text, to show to its holder once.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// The stored form of an API key: SHA-256 of its text.
///
/// A fast hash is right here, unlike for passwords: the key holds 256 random
/// bits, so there is nothing to guess and no dictionary to try, and a slow
/// hash (Argon2, bcrypt) would only slow every authenticated request.
/// Comparison is in constant time.
#[derive(Clone, Copy)]
pub struct ApiKeyHash([u8; 32]);

impl ApiKeyHash {
    /// The hash of a presented key, to look up or compare.
    pub fn of(key: &str) -> ApiKeyHash {
        ApiKeyHash(Sha256::digest(key.as_bytes()).into())
    }

    /// A hash read back from the store.
    pub fn from_bytes(bytes: [u8; 32]) -> ApiKeyHash {
        ApiKeyHash(bytes)
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Whether `key` is the key this is the hash of, in constant time.
    pub fn matches(&self, key: &str) -> bool {
        *self == ApiKeyHash::of(key)
    }
}

impl PartialEq for ApiKeyHash {
    /// Constant time: the time taken tells nothing about where two hashes
    /// first differ.
    fn eq(&self, other: &ApiKeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for ApiKeyHash {}

impl fmt::Debug for ApiKeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeyHash(")?;
        for byte in &self.0[..4] {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &[u8] = b"11010519491231002X";

    fn keys() -> DataKeys {
        DataKeys::generate().unwrap()
    }

    #[test]
    fn an_encrypted_value_decrypts_to_itself() {
        let keys = keys();
        let sealed = keys.encrypt(Purpose::ResidentId, ID).unwrap();
        assert_eq!(sealed.len(), ID.len() + NONCE_BYTES + TAG_BYTES);
        assert!(!sealed.windows(ID.len()).any(|window| window == ID));
        assert_eq!(keys.decrypt(Purpose::ResidentId, &sealed).unwrap(), ID);
        let empty = keys.encrypt(Purpose::BankAccount, b"").unwrap();
        assert_eq!(keys.decrypt(Purpose::BankAccount, &empty).unwrap(), b"");
    }

    #[test]
    fn two_encryptions_of_the_same_id_differ() {
        let keys = keys();
        let first = keys.encrypt(Purpose::ResidentId, ID).unwrap();
        let second = keys.encrypt(Purpose::ResidentId, ID).unwrap();
        assert_ne!(first[..NONCE_BYTES], second[..NONCE_BYTES]);
        assert_ne!(first, second);
    }

    #[test]
    fn a_flipped_byte_anywhere_fails_to_decrypt() {
        let keys = keys();
        let sealed = keys.encrypt(Purpose::ResidentId, ID).unwrap();
        for position in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[position] ^= 0x01;
            assert!(matches!(
                keys.decrypt(Purpose::ResidentId, &tampered),
                Err(CryptoError::Inauthentic {
                    purpose: Purpose::ResidentId
                })
            ));
        }
    }

    #[test]
    fn a_value_decrypted_as_another_purpose_fails() {
        let keys = keys();
        let sealed = keys
            .encrypt(Purpose::BankAccount, b"6222020200112233445")
            .unwrap();
        let error = keys.decrypt(Purpose::ResidentId, &sealed).unwrap_err();
        assert!(matches!(
            error,
            CryptoError::Inauthentic {
                purpose: Purpose::ResidentId
            }
        ));
        assert!(error.to_string().contains("another column"), "{error}");
    }

    #[test]
    fn a_value_decrypted_under_another_key_fails() {
        let sealed = keys().encrypt(Purpose::ResidentId, ID).unwrap();
        assert!(matches!(
            keys().decrypt(Purpose::ResidentId, &sealed),
            Err(CryptoError::Inauthentic { .. })
        ));
    }

    #[test]
    fn a_truncated_ciphertext_is_refused_by_length() {
        let keys = keys();
        let sealed = keys.encrypt(Purpose::ResidentId, b"").unwrap();
        let error = keys
            .decrypt(Purpose::ResidentId, &sealed[..sealed.len() - 1])
            .unwrap_err();
        assert!(
            matches!(
                error,
                CryptoError::Truncated {
                    length: 27,
                    minimum: 28,
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(matches!(
            keys.decrypt(Purpose::ResidentId, &[]),
            Err(CryptoError::Truncated { .. })
        ));
    }

    #[test]
    fn the_blind_index_is_deterministic_and_separated_by_purpose_and_key() {
        let keys = keys();
        let index = keys.blind_index(Purpose::ResidentId, ID);
        assert_eq!(index, keys.blind_index(Purpose::ResidentId, ID));
        assert_eq!(index, keys.clone().blind_index(Purpose::ResidentId, ID));
        assert_ne!(
            index,
            keys.blind_index(Purpose::ResidentId, b"110105194912310029")
        );
        assert_ne!(index, keys.blind_index(Purpose::BankAccount, ID));
        assert_ne!(index, self::keys().blind_index(Purpose::ResidentId, ID));
    }

    #[test]
    fn the_blind_index_is_hmac_sha256_of_the_label_and_value() {
        // Pins the construction: indexes already stored depend on it.
        let keys = DataKeys::from_bytes([1; 32], [2; 32]);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[2; 32]).unwrap();
        mac.update(b"jiuzhu/resident-id/v1\x00");
        mac.update(ID);
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(keys.blind_index(Purpose::ResidentId, ID), expected);
    }

    #[test]
    fn the_key_text_reads_back_as_the_same_keys() {
        let keys = keys();
        let text = keys.encoded();
        assert!(text.starts_with("v1:"));
        assert_eq!(text.len(), 3 + 88);
        let read = DataKeys::from_encoded(&text).unwrap();
        assert_eq!(read.encoded(), text);
        assert_eq!(
            read.blind_index(Purpose::ResidentId, ID),
            keys.blind_index(Purpose::ResidentId, ID)
        );
        let sealed = keys.encrypt(Purpose::ResidentId, ID).unwrap();
        assert_eq!(read.decrypt(Purpose::ResidentId, &sealed).unwrap(), ID);
        let with_newline = format!("  {text}\n");
        assert_eq!(DataKeys::from_encoded(&with_newline).unwrap().encoded(), text);
    }

    #[test]
    fn each_malformed_key_text_is_refused_with_its_reason() {
        let good = DataKeys::from_bytes([0xFB; 32], [0xFF; 32]).encoded();
        assert!(good.contains('+') && good.contains('/'));
        let body = good.strip_prefix("v1:").unwrap();
        let short = format!("v1:{}", STANDARD.encode([7u8; 63]));
        let long = format!("v1:{}", STANDARD.encode([7u8; 65]));
        let cases = [
            ("", KeyTextError::Empty),
            ("  \n", KeyTextError::Empty),
            (body, KeyTextError::WrongPrefix),
            (&format!("v2:{body}")[..], KeyTextError::WrongPrefix),
            (&format!("V1:{body}")[..], KeyTextError::WrongPrefix),
            (&format!("v1:{}", &body[1..])[..], KeyTextError::BadBase64),
            (
                &format!("v1:{}*", &body[..body.len() - 1])[..],
                KeyTextError::BadBase64,
            ),
            (
                &format!("v1:{}", body.replace('+', "-").replace('/', "_"))[..],
                KeyTextError::BadBase64,
            ),
            (&short[..], KeyTextError::WrongLength { length: 63 }),
            (&long[..], KeyTextError::WrongLength { length: 65 }),
            ("v1:", KeyTextError::WrongLength { length: 0 }),
        ];
        for (text, expected) in cases {
            let error = DataKeys::from_encoded(text).unwrap_err();
            assert_eq!(error, expected, "{text:?}");
            assert!(!error.to_string().contains(body), "{error}");
        }
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let keys = DataKeys::from_bytes([0xAB; 32], [0xCD; 32]);
        let shown = format!("{keys:?} {keys:#?}");
        assert_eq!(format!("{keys:?}"), "DataKeys(…)");
        for needle in ["ab", "AB", "171", "cd", "CD", "205", &keys.encoded()[3..13]] {
            assert!(!shown.contains(needle), "{shown}");
        }
        let (key, _) = ApiKey::generate().unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(…)");
    }

    #[test]
    fn an_api_key_hash_matches_its_key_and_not_another() {
        let (key, hash) = ApiKey::generate().unwrap();
        let (other, other_hash) = ApiKey::generate().unwrap();
        assert!(key.as_str().starts_with("jz_"));
        assert_eq!(key.as_str().len(), 3 + 43);
        assert!(key.as_str()[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(key, other);
        assert!(hash.matches(key.as_str()));
        assert!(!hash.matches(other.as_str()));
        assert!(!hash.matches(&key.as_str()[..45]));
        assert_eq!(hash, ApiKeyHash::of(key.as_str()));
        assert_ne!(hash, other_hash);
        assert_eq!(ApiKeyHash::from_bytes(*hash.as_bytes()), hash);
        let text = key.into_string();
        assert!(hash.matches(&text));
    }

    #[test]
    fn an_api_key_hash_is_sha256_of_the_key_text() {
        let hash = ApiKeyHash::of("abc");
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let hex: String = hash.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        assert_eq!(format!("{hash:?}"), "ApiKeyHash(ba7816bf…)");
    }
}
