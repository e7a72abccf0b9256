//! The audit log's hash chain, pure: every write appends an [`AuditEntry`]
//! whose hash covers the previous entry's hash, so that changing or removing
//! any stored entry breaks every hash after it; [`verify_chain`] finds the
//! first break.
//!
//! `hash(entry n) = SHA-256(hash(entry n-1) ‖ canonical encoding of entry n)`,
//! with [`GENESIS`] (32 zero bytes) before entry 1.
//!
//! The chain proves that no entry *inside* it was changed or removed. Someone
//! who can write the database could still drop entries at the end, or
//! rewrite an entry and recompute every hash after it; to catch that, keep
//! the latest [`ChainSummary`] (entry count and last hash) somewhere they
//! cannot write, and compare.

use std::fmt;

use sha2::{Digest, Sha256};

/// The "previous hash" of the first entry: 32 zero bytes.
pub const GENESIS: [u8; 32] = [0; 32];

/// One write, as recorded in the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    /// Position in the log: 1 for the first entry, then consecutive.
    pub sequence: u64,
    /// When, as RFC 3339 text (hashed as the text stored, not reparsed).
    pub at: String,
    /// Who: a user, a hospital's API key name, or a job.
    pub actor: String,
    /// What was done, e.g. `settle`, `import_spells`.
    pub action: String,
    /// What it was done to, e.g. an invoice number or a person's key (never
    /// a full resident ID number).
    pub subject: String,
    /// Further details as JSON text.
    pub details: String,
}

impl AuditEntry {
    /// The canonical encoding that is hashed, unambiguous so that no two
    /// different entries encode alike:
    ///
    /// ```text
    /// sequence                    8 bytes, unsigned big-endian
    /// then for each of at, actor, action, subject, details, in this order:
    ///   length of the UTF-8 bytes 8 bytes, unsigned big-endian
    ///   the UTF-8 bytes
    /// ```
    ///
    /// Stored hashes depend on these bytes: never change the encoding.
    pub fn canonical_encoding(&self) -> Vec<u8> {
        let length = 8 + self
            .text_fields()
            .iter()
            .map(|field| 8 + field.len())
            .sum::<usize>();
        let mut bytes = Vec::with_capacity(length);
        self.encode_into(|part| bytes.extend_from_slice(part));
        bytes
    }

    /// This entry's hash: SHA-256(`previous` ‖ canonical encoding), where
    /// `previous` is the hash of the entry before, or [`GENESIS`] for the
    /// first.
    pub fn hash(&self, previous: &[u8; 32]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(previous);
        self.encode_into(|part| hasher.update(part));
        hasher.finalize().into()
    }

    fn text_fields(&self) -> [&str; 5] {
        [&self.at, &self.actor, &self.action, &self.subject, &self.details]
    }

    fn encode_into(&self, mut write: impl FnMut(&[u8])) {
        write(&self.sequence.to_be_bytes());
        for field in self.text_fields() {
            // usize is at most 64 bits on every target Rust supports.
            write(&(field.len() as u64).to_be_bytes());
            write(field.as_bytes());
        }
    }
}

/// A chain that verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainSummary {
    /// How many entries it holds.
    pub entries: u64,
    /// The hash of its last entry, or [`GENESIS`] if it is empty: what the
    /// next entry chains to, and what to keep elsewhere to detect a
    /// rewritten or shortened log.
    pub last_hash: [u8; 32],
}

/// The first place where a chain does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit entry {sequence}: {reason}")]
pub struct ChainBreak {
    /// The sequence number of the first bad entry, as stored.
    pub sequence: u64,
    pub reason: BreakReason,
}

/// Why an entry breaks the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreakReason {
    /// The stored hash differs from the one recomputed from the entry and
    /// the hash before it: the entry or its stored hash was changed.
    Edited,
    /// The entry came where `expected` should have: entries were removed
    /// (or the log was read out of order).
    Missing { expected: u64 },
    /// The entry's sequence number is lower than `expected`: it repeats or
    /// goes back (a copied entry, or the log read out of order).
    OutOfOrder { expected: u64 },
}

impl fmt::Display for BreakReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakReason::Edited => {
                f.write_str("its stored hash does not match its contents: the entry or its hash was changed")
            }
            BreakReason::Missing { expected } if *expected == 1 => {
                f.write_str("the log does not start at entry 1: entry 1 is missing")
            }
            BreakReason::Missing { expected } => {
                write!(
                    f,
                    "it follows entry {}: entry {expected} is missing",
                    expected - 1
                )
            }
            BreakReason::OutOfOrder { expected } => {
                write!(f, "out of order: entry {expected} was expected next")
            }
        }
    }
}

/// Walks a chain in stored order and checks that sequence numbers run 1, 2,
/// 3… without a gap (a removed entry is found) and that each stored hash
/// equals the one recomputed from the entry and the hash before it (a
/// changed entry is found). Stops at the first bad entry.
pub fn verify_chain(
    rows: impl IntoIterator<Item = (AuditEntry, [u8; 32])>,
) -> Result<ChainSummary, ChainBreak> {
    let mut entries: u64 = 0;
    let mut last_hash = GENESIS;
    for (entry, stored_hash) in rows {
        // `entries` counts entries that verified, whose sequences are exactly
        // 1..=entries, so it cannot reach u64::MAX before the next is read.
        let expected = entries.saturating_add(1);
        let reason = if entry.sequence > expected {
            Some(BreakReason::Missing { expected })
        } else if entry.sequence < expected {
            Some(BreakReason::OutOfOrder { expected })
        } else if entry.hash(&last_hash) != stored_hash {
            Some(BreakReason::Edited)
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(ChainBreak {
                sequence: entry.sequence,
                reason,
            });
        }
        entries = expected;
        last_hash = stored_hash;
    }
    Ok(ChainSummary { entries, last_hash })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sequence: u64) -> AuditEntry {
        AuditEntry {
            sequence,
            at: format!("2025-03-0{sequence}T08:30:00+08:00"),
            actor: "staff:wang".to_owned(),
            action: "settle".to_owned(),
            subject: format!("invoice:INV-{sequence:04}"),
            details: format!(r#"{{"assisted_fen":{}}}"#, sequence * 1000),
        }
    }

    fn chain(length: u64) -> Vec<(AuditEntry, [u8; 32])> {
        let mut previous = GENESIS;
        (1..=length)
            .map(|sequence| {
                let entry = entry(sequence);
                previous = entry.hash(&previous);
                (entry, previous)
            })
            .collect()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn a_valid_chain_of_five_verifies() {
        let rows = chain(5);
        let last_hash = rows[4].1;
        assert_eq!(
            verify_chain(rows),
            Ok(ChainSummary {
                entries: 5,
                last_hash
            })
        );
    }

    #[test]
    fn an_empty_chain_verifies_with_the_genesis_hash() {
        assert_eq!(
            verify_chain(Vec::new()),
            Ok(ChainSummary {
                entries: 0,
                last_hash: GENESIS
            })
        );
    }

    #[test]
    fn editing_any_field_of_entry_3_is_reported_at_3() {
        let edits: [fn(&mut AuditEntry); 5] = [
            |e| e.at.push('Z'),
            |e| e.actor = "staff:li".to_owned(),
            |e| e.action = "revoke".to_owned(),
            |e| e.subject.push('1'),
            |e| e.details = r#"{"assisted_fen":99999}"#.to_owned(),
        ];
        for edit in edits {
            let mut rows = chain(5);
            edit(&mut rows[2].0);
            assert_eq!(
                verify_chain(rows),
                Err(ChainBreak {
                    sequence: 3,
                    reason: BreakReason::Edited
                })
            );
        }
        let mut rows = chain(5);
        rows[2].0.sequence = 30;
        assert_eq!(
            verify_chain(rows),
            Err(ChainBreak {
                sequence: 30,
                reason: BreakReason::Missing { expected: 3 }
            })
        );
    }

    #[test]
    fn editing_a_stored_hash_is_reported_at_its_entry() {
        let mut rows = chain(5);
        rows[2].1[0] ^= 1;
        assert_eq!(
            verify_chain(rows),
            Err(ChainBreak {
                sequence: 3,
                reason: BreakReason::Edited
            })
        );
    }

    #[test]
    fn rewriting_an_entry_with_a_fresh_hash_is_reported_at_the_next_entry() {
        let mut rows = chain(5);
        rows[2].0.actor = "staff:li".to_owned();
        rows[2].1 = rows[2].0.hash(&rows[1].1);
        assert_eq!(
            verify_chain(rows),
            Err(ChainBreak {
                sequence: 4,
                reason: BreakReason::Edited
            })
        );
    }

    #[test]
    fn removing_entry_2_is_reported() {
        let mut rows = chain(5);
        rows.remove(1);
        let error = verify_chain(rows).unwrap_err();
        assert_eq!(
            error,
            ChainBreak {
                sequence: 3,
                reason: BreakReason::Missing { expected: 2 }
            }
        );
        assert_eq!(
            error.to_string(),
            "audit entry 3: it follows entry 1: entry 2 is missing"
        );
    }

    #[test]
    fn removing_entry_1_is_reported() {
        let mut rows = chain(5);
        rows.remove(0);
        let error = verify_chain(rows).unwrap_err();
        assert_eq!(
            error,
            ChainBreak {
                sequence: 2,
                reason: BreakReason::Missing { expected: 1 }
            }
        );
        assert_eq!(
            error.to_string(),
            "audit entry 2: the log does not start at entry 1: entry 1 is missing"
        );
    }

    #[test]
    fn removing_an_entry_and_renumbering_the_rest_is_reported() {
        let mut rows = chain(5);
        rows.remove(1);
        for (row, sequence) in rows.iter_mut().zip(1..) {
            row.0.sequence = sequence;
        }
        assert_eq!(
            verify_chain(rows),
            Err(ChainBreak {
                sequence: 2,
                reason: BreakReason::Edited
            })
        );
    }

    #[test]
    fn swapping_two_entries_is_reported() {
        // The contents of entries 2 and 3 swapped, their numbers kept.
        let mut rows = chain(5);
        let (second, third) = (rows[1].clone(), rows[2].clone());
        rows[1] = (
            AuditEntry {
                sequence: 2,
                ..third.0
            },
            third.1,
        );
        rows[2] = (
            AuditEntry {
                sequence: 3,
                ..second.0
            },
            second.1,
        );
        assert_eq!(
            verify_chain(rows),
            Err(ChainBreak {
                sequence: 2,
                reason: BreakReason::Edited
            })
        );

        // Whole rows swapped, read in stored order.
        let mut rows = chain(5);
        rows.swap(1, 2);
        assert_eq!(
            verify_chain(rows),
            Err(ChainBreak {
                sequence: 3,
                reason: BreakReason::Missing { expected: 2 }
            })
        );
    }

    #[test]
    fn a_repeated_entry_is_reported_out_of_order() {
        let mut rows = chain(5);
        rows.insert(2, rows[1].clone());
        let error = verify_chain(rows).unwrap_err();
        assert_eq!(
            error,
            ChainBreak {
                sequence: 2,
                reason: BreakReason::OutOfOrder { expected: 3 }
            }
        );
        assert_eq!(
            error.to_string(),
            "audit entry 2: out of order: entry 3 was expected next"
        );
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_hash() {
        let first = AuditEntry {
            actor: "ab".to_owned(),
            action: "c".to_owned(),
            ..entry(1)
        };
        let second = AuditEntry {
            actor: "a".to_owned(),
            action: "bc".to_owned(),
            ..entry(1)
        };
        assert_ne!(first.canonical_encoding(), second.canonical_encoding());
        assert_ne!(first.hash(&GENESIS), second.hash(&GENESIS));
    }

    #[test]
    fn the_canonical_encoding_is_length_prefixed_big_endian() {
        let entry = AuditEntry {
            sequence: 258,
            at: "t".to_owned(),
            actor: "ab".to_owned(),
            action: String::new(),
            subject: "主".to_owned(),
            details: "{}".to_owned(),
        };
        let mut expected = vec![0, 0, 0, 0, 0, 0, 1, 2];
        for field in ["t", "ab", "", "主", "{}"] {
            expected.extend_from_slice(&(field.len() as u64).to_be_bytes());
            expected.extend_from_slice(field.as_bytes());
        }
        assert_eq!(entry.canonical_encoding(), expected);
        let mut hasher = Sha256::new();
        hasher.update([7u8; 32]);
        hasher.update(&expected);
        let direct: [u8; 32] = hasher.finalize().into();
        assert_eq!(entry.hash(&[7; 32]), direct);
    }

    #[test]
    fn the_hash_of_a_known_entry_is_pinned() {
        // Stored chains depend on this value: if it changes, the encoding
        // changed and every existing audit log would fail to verify. The
        // value was also computed independently from the documented encoding.
        let entry = AuditEntry {
            sequence: 1,
            at: "2025-03-01T08:30:00+08:00".to_owned(),
            actor: "staff:wang".to_owned(),
            action: "settle".to_owned(),
            subject: "invoice:INV-0001".to_owned(),
            details: r#"{"assisted_fen":1000,"note":"门诊"}"#.to_owned(),
        };
        assert_eq!(
            hex(&entry.hash(&GENESIS)),
            "7c5795bf047564ca7adbdc704185366785669961413fa45f4e829c3c22051933"
        );
    }
}
