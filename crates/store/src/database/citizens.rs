//! Citizens: their phone on record, their login by resident ID, phone and
//! a one-time code, and what their own pages show (their assisted bills).
//!
//! A phone is kept like a resident ID: encrypted, masked, found by its
//! blind index; a change is a new row. A login code is six digits, kept
//! only as its SHA-256, good for [`CODE_SECONDS`] and [`CODE_TRIES`]
//! tries; at most [`CODES_PER_WINDOW`] codes are made for a person in
//! [`CODE_WINDOW_SECONDS`]. A citizen's session names them by their blind
//! index, never their ID.

use std::collections::BTreeMap;

use jiuzhu_core::{Fen, ResidentId};
use sha2::{Digest, Sha256};

use super::applications::ApplicationError;
use super::web_sessions::{session_on, NewSession, WebSession};
use super::{Backend, Store, StoreError};
use crate::crypto::{ApiKeyHash, Purpose};
use crate::notify::{details_code_text, login_code_text, NotificationKind};

pub const CODE_SECONDS: i64 = 300;
pub const CODE_TRIES: i64 = 5;
pub const CODES_PER_WINDOW: i64 = 5;
pub const CODE_WINDOW_SECONDS: i64 = 900;

/// What asking for a login code did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRequest {
    /// The ID and phone match: the code to send, and its number (for the
    /// sender, which tells codes apart from notifications by it).
    Made {
        code: String,
        id: i64,
        masked_phone: String,
    },
    /// They do not match, or the person is unknown: no code (the page says
    /// the same as when one is sent).
    NoMatch,
    /// Too many codes lately.
    Limited,
}

/// How a citizen logged in, as the audit log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginChannel {
    /// Resident ID, phone on record and a one-time code.
    Code,
    /// The city's unified login (统一身份认证, OpenID Connect).
    Oidc,
}

impl LoginChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginChannel::Code => "code",
            LoginChannel::Oidc => "oidc",
        }
    }
}

/// A payment to the citizen: a line of a batch, or what waits for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitizenPayment {
    /// `paid`, `pending` (sent to the bank), `failed`, or `waiting` (owed,
    /// in no batch yet).
    pub status: String,
    pub amount: Fen,
    /// When the bank answered, or when the line was made.
    pub at: String,
    /// What it pays: `decision:<bill>` or `top_up:<clearing line>`.
    pub paying: Vec<String>,
    pub reason: Option<String>,
}

/// A resident's details as their page shows them, masked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CitizenDetails {
    pub phone: Option<String>,
    /// Holder, bank, masked account.
    pub bank_account: Option<(String, String, String)>,
}

/// New details, confirmed by a code sent to the phone on record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewDetails {
    pub phone: Option<String>,
    /// Holder, bank, account number (digits).
    pub bank_account: Option<(String, String, String)>,
}

/// A bill of the citizen's, as their page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitizenBill {
    pub invoice_no: String,
    pub hospital: String,
    pub service_date: String,
    pub total: Fen,
    pub in_scope_self_pay: Fen,
    pub outcome: String,
    pub amount: Fen,
    pub reversed: bool,
    /// The decision's answer as stored (JSON of the settlement response).
    pub response: String,
}

/// A citizen's page of bills, read at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitizenBillsPage {
    pub session: WebSession,
    /// Their blind index.
    pub key: Vec<u8>,
    /// Their resident ID, masked.
    pub masked: String,
    pub bills: Vec<CitizenBill>,
}

/// A person's masked resident ID, by their blind index.
const MASKED_SQL: &str = "SELECT resident_id_masked FROM persons WHERE person_key = $1";

/// A citizen's bills with their decisions (the decision's stored answer
/// among them) and whether each was reversed, newest service date first:
/// the one statement of both backends and both read paths that reads a
/// decision's answer.
const CITIZEN_BILLS_SQL: &str = "SELECT i.invoice_no, i.hospital, i.service_date, i.total, \
     i.in_scope_self_pay, d.outcome, d.amount, a.response, EXISTS (SELECT 1 FROM decisions r \
     WHERE r.invoice_no = d.invoice_no AND r.kind = 'reversal') AS reversed \
     FROM decisions d JOIN invoices i ON i.invoice_no = d.invoice_no \
     JOIN decision_responses a ON a.decision_id = d.id \
     WHERE d.person_key = $1 AND d.kind = 'decision' ORDER BY i.service_date DESC, i.invoice_no";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A mainland mobile number: 11 digits, starting with 1.
pub fn check_phone(phone: &str) -> Result<(), ApplicationError> {
    if phone.len() == 11 && phone.starts_with('1') && phone.bytes().all(|byte| byte.is_ascii_digit()) {
        Ok(())
    } else {
        Err(ApplicationError::Invalid(
            "a phone number is 11 digits starting with 1".into(),
        ))
    }
}

/// A new one-time code: six random digits.
fn new_code() -> Result<String, StoreError> {
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).map_err(|error| StoreError::Damaged(format!("no randomness: {error}")))?;
    Ok(format!("{:06}", u32::from_le_bytes(random) % 1_000_000))
}

/// A code's notification, to be written with the code.
#[derive(Debug)]
pub(crate) struct CodeMessage {
    kind: NotificationKind,
    /// Its phone and text, sealed ([`seal_code`]).
    sealed: Vec<u8>,
}

/// A code's message and the phone it goes to, sealed under the data key
/// (the outbox never holds them in clear; see `database/outbox.rs`).
fn seal_code(keys: &crate::crypto::DataKeys, phone: &str, text: &str) -> Result<Vec<u8>, StoreError> {
    let plain = serde_json::to_vec(&super::outbox::SealedCode {
        phone: phone.to_owned(),
        text: text.to_owned(),
    })
    .map_err(|error| StoreError::Damaged(format!("a code's message: {error}")))?;
    Ok(keys.encrypt(Purpose::Message, &plain)?)
}

fn masked_phone(phone: &str) -> String {
    format!("{}****{}", &phone[..3], &phone[7..])
}

impl Store {
    /// Records `person`'s phone (a new row; the newest is theirs).
    pub async fn set_phone(
        &self,
        person: ResidentId,
        phone: &str,
        actor: &str,
    ) -> Result<String, ApplicationError> {
        check_phone(phone)?;
        let key = self
            .keys
            .blind_index(Purpose::ResidentId, person.to_string().as_bytes())
            .to_vec();
        let encrypted = self
            .keys
            .encrypt(Purpose::Phone, phone.as_bytes())
            .map_err(StoreError::from)?;
        let index = self.keys.blind_index(Purpose::Phone, phone.as_bytes()).to_vec();
        let masked = masked_phone(phone);
        let stored = match &self.backend {
            Backend::Sqlite(pool) => {
                sqlite_citizens::set_phone(pool, &key, &person.masked(), &encrypted, &masked, &index, actor)
                    .await?
            }
            Backend::Postgres(pool) => {
                postgres_citizens::set_phone(pool, &key, &person.masked(), &encrypted, &masked, &index, actor)
                    .await?
            }
        };
        if !stored {
            return Err(ApplicationError::UnknownPerson);
        }
        Ok(masked)
    }

    /// Makes a login code for `person` if `phone` is the one on record.
    pub async fn request_login_code(
        &self,
        person: ResidentId,
        phone: &str,
    ) -> Result<CodeRequest, StoreError> {
        if check_phone(phone).is_err() {
            return Ok(CodeRequest::NoMatch);
        }
        let key = self
            .keys
            .blind_index(Purpose::ResidentId, person.to_string().as_bytes())
            .to_vec();
        let index = self.keys.blind_index(Purpose::Phone, phone.as_bytes()).to_vec();
        let code = new_code()?;
        let hash = Sha256::digest(code.as_bytes()).to_vec();
        // Sealed whether or not the ID and phone match: the answer takes
        // the same work either way (the phone typed is the one on record
        // when they match).
        let message = CodeMessage {
            kind: NotificationKind::LoginCode,
            sealed: seal_code(&self.keys, phone, &login_code_text(&code, CODE_SECONDS / 60))?,
        };
        let now = unix_now();
        let made = match &self.backend {
            Backend::Sqlite(pool) => {
                sqlite_citizens::make_code(pool, &key, &index, &hash, now, message).await?
            }
            Backend::Postgres(pool) => {
                postgres_citizens::make_code(pool, &key, &index, &hash, now, message).await?
            }
        };
        if matches!(made, Some(Ok(_))) {
            self.wake_code_sender();
        }
        Ok(match made {
            Some(Ok(id)) => CodeRequest::Made {
                code,
                id,
                masked_phone: masked_phone(phone),
            },
            Some(Err(())) => CodeRequest::Limited,
            None => CodeRequest::NoMatch,
        })
    }

    /// Opens a citizen's session if `code` is their latest code, unexpired,
    /// unused and within its tries.
    pub async fn finish_login(
        &self,
        person: ResidentId,
        code: &str,
        seconds: i64,
    ) -> Result<Option<NewSession>, StoreError> {
        let key = self
            .keys
            .blind_index(Purpose::ResidentId, person.to_string().as_bytes())
            .to_vec();
        let hash = Sha256::digest(code.trim().as_bytes()).to_vec();
        let now = unix_now();
        let matched = match &self.backend {
            Backend::Sqlite(pool) => sqlite_citizens::use_code(pool, &key, &hash, now).await?,
            Backend::Postgres(pool) => postgres_citizens::use_code(pool, &key, &hash, now).await?,
        };
        if !matched {
            return Ok(None);
        }
        self.open_session_of(
            "citizen",
            &hex(&key),
            seconds,
            &person.masked(),
            Some(LoginChannel::Code),
        )
        .await
        .map(Some)
    }

    /// Opens a citizen's session for `person`, whom `channel` vouched for
    /// (the city's unified login), if the store knows them (`None` if not:
    /// nothing is stored). Audited as the code login is, with its channel.
    pub async fn open_citizen_session(
        &self,
        person: ResidentId,
        channel: LoginChannel,
        seconds: i64,
    ) -> Result<Option<NewSession>, StoreError> {
        let key = self
            .keys
            .blind_index(Purpose::ResidentId, person.to_string().as_bytes())
            .to_vec();
        let known = match &self.backend {
            Backend::Sqlite(pool) => sqlite_citizens::masked(pool, &key).await?,
            Backend::Postgres(pool) => postgres_citizens::masked(pool, &key).await?,
        };
        if known.is_none() {
            return Ok(None);
        }
        self.open_session_of("citizen", &hex(&key), seconds, &person.masked(), Some(channel))
            .await
            .map(Some)
    }

    /// A citizen's session: the session, their blind index and their
    /// masked resident ID; one read.
    pub async fn citizen_session(
        &self,
        token: &str,
    ) -> Result<Option<(WebSession, Vec<u8>, String)>, StoreError> {
        let hash = ApiKeyHash::of(token);
        let now = unix_now();
        match &self.backend {
            Backend::Sqlite(_) => self.sqlite_read(move |read| citizen_on(read, &hash, now)).await,
            Backend::Postgres(pool) => postgres_reads::citizen(pool, &hash, now).await,
        }
    }

    /// A citizen's page of bills: their session, who they are and their
    /// bills (as [`Store::citizen_bills`]), all in one read on SQLite;
    /// `None` when the token opens no citizen's session.
    pub async fn citizen_bills_page(&self, token: &str) -> Result<Option<CitizenBillsPage>, StoreError> {
        let hash = ApiKeyHash::of(token);
        let now = unix_now();
        let page = match &self.backend {
            Backend::Sqlite(_) => {
                self.sqlite_read(move |read| {
                    let Some(citizen) = citizen_on(read, &hash, now)? else {
                        return Ok(None);
                    };
                    let bills = bills_on(read, &citizen.1)?;
                    Ok(Some((citizen, bills)))
                })
                .await?
            }
            Backend::Postgres(pool) => match postgres_reads::citizen(pool, &hash, now).await? {
                Some(citizen) => {
                    let bills = postgres_reads::bills(pool, &citizen.1).await?;
                    Some((citizen, bills))
                }
                None => None,
            },
        };
        Ok(page.map(|((session, key, masked), bills)| CitizenBillsPage {
            session,
            key,
            masked,
            bills,
        }))
    }

    /// The resident ID of the person with the blind index `key`, decrypted
    /// from their record (for a resident's own application).
    pub async fn resident_id_of_key(&self, key: &[u8]) -> Result<Option<ResidentId>, StoreError> {
        let encrypted = match &self.backend {
            Backend::Sqlite(pool) => sqlite_citizens::encrypted_id(pool, key).await?,
            Backend::Postgres(pool) => postgres_citizens::encrypted_id(pool, key).await?,
        };
        let Some(encrypted) = encrypted else {
            return Ok(None);
        };
        let plain = self.keys.decrypt(Purpose::ResidentId, &encrypted)?;
        Ok(std::str::from_utf8(&plain)
            .ok()
            .and_then(|text| ResidentId::parse(text).ok()))
    }

    /// A resident's phone and bank account, masked.
    pub async fn citizen_details(&self, key: &[u8]) -> Result<CitizenDetails, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_citizens::details(pool, key).await,
            Backend::Postgres(pool) => postgres_citizens::details(pool, key).await,
        }
    }

    /// Makes a code for a resident already logged in, to the phone on
    /// record, to confirm a change of their details.
    pub async fn request_code_by_key(&self, key: &[u8]) -> Result<CodeRequest, StoreError> {
        let contact = match &self.backend {
            Backend::Sqlite(pool) => sqlite_citizens::phone_index(pool, key).await?,
            Backend::Postgres(pool) => postgres_citizens::phone_index(pool, key).await?,
        };
        let Some((index, encrypted)) = contact else {
            return Ok(CodeRequest::NoMatch);
        };
        let phone = self.keys.decrypt(Purpose::Phone, &encrypted)?;
        let phone = String::from_utf8(phone)
            .map_err(|_| StoreError::Damaged("a phone on record is not text".into()))?;
        let code = new_code()?;
        let hash = Sha256::digest(code.as_bytes()).to_vec();
        let message = CodeMessage {
            kind: NotificationKind::DetailsCode,
            sealed: seal_code(&self.keys, &phone, &details_code_text(&code, CODE_SECONDS / 60))?,
        };
        let made = match &self.backend {
            Backend::Sqlite(pool) => {
                sqlite_citizens::make_code(pool, key, &index, &hash, unix_now(), message).await?
            }
            Backend::Postgres(pool) => {
                postgres_citizens::make_code(pool, key, &index, &hash, unix_now(), message).await?
            }
        };
        if matches!(made, Some(Ok(_))) {
            self.wake_code_sender();
        }
        Ok(match made {
            Some(Ok(id)) => CodeRequest::Made {
                code,
                id,
                masked_phone: String::new(),
            },
            Some(Err(())) => CodeRequest::Limited,
            None => CodeRequest::NoMatch,
        })
    }

    /// Changes a resident's phone or bank account (from the next batch),
    /// if `code` is the one just sent to the phone on record; audited.
    pub async fn change_details(
        &self,
        key: &[u8],
        masked: &str,
        code: &str,
        new: &NewDetails,
    ) -> Result<(), ApplicationError> {
        if let Some(phone) = &new.phone {
            check_phone(phone)?;
        }
        if let Some((holder, bank, account)) = &new.bank_account {
            if holder.trim().is_empty() || bank.trim().is_empty() {
                return Err(ApplicationError::Invalid(
                    "the holder and the bank are needed".into(),
                ));
            }
            if account.len() < 12 || account.len() > 30 || !account.bytes().all(|byte| byte.is_ascii_digit())
            {
                return Err(ApplicationError::Invalid(
                    "an account number is 12 to 30 digits".into(),
                ));
            }
        }
        let hash = Sha256::digest(code.trim().as_bytes()).to_vec();
        let matched = match &self.backend {
            Backend::Sqlite(pool) => sqlite_citizens::use_code(pool, key, &hash, unix_now()).await?,
            Backend::Postgres(pool) => postgres_citizens::use_code(pool, key, &hash, unix_now()).await?,
        };
        if !matched {
            return Err(ApplicationError::Refused(
                "the code is wrong or has expired".into(),
            ));
        }
        let actor = format!("citizen:{masked}");
        if let Some(phone) = &new.phone {
            let encrypted = self
                .keys
                .encrypt(Purpose::Phone, phone.as_bytes())
                .map_err(StoreError::from)?;
            let index = self.keys.blind_index(Purpose::Phone, phone.as_bytes()).to_vec();
            let masked_phone = masked_phone(phone);
            match &self.backend {
                Backend::Sqlite(pool) => {
                    sqlite_citizens::set_phone(pool, key, masked, &encrypted, &masked_phone, &index, &actor)
                        .await?
                }
                Backend::Postgres(pool) => {
                    postgres_citizens::set_phone(pool, key, masked, &encrypted, &masked_phone, &index, &actor)
                        .await?
                }
            };
        }
        if let Some((holder, bank, account)) = &new.bank_account {
            let encrypted = self
                .keys
                .encrypt(Purpose::BankAccount, account.as_bytes())
                .map_err(StoreError::from)?;
            let shown = super::disbursement::masked_account(account);
            match &self.backend {
                Backend::Sqlite(pool) => {
                    sqlite_citizens::set_account(
                        pool,
                        key,
                        masked,
                        holder.trim(),
                        bank.trim(),
                        &encrypted,
                        &shown,
                        &actor,
                    )
                    .await?
                }
                Backend::Postgres(pool) => {
                    postgres_citizens::set_account(
                        pool,
                        key,
                        masked,
                        holder.trim(),
                        bank.trim(),
                        &encrypted,
                        &shown,
                        &actor,
                    )
                    .await?
                }
            }
        }
        Ok(())
    }

    /// The citizen's payments, newest first, then what waits for a batch.
    pub async fn citizen_payments(&self, key: &[u8]) -> Result<Vec<CitizenPayment>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_citizens::payments(pool, key).await,
            Backend::Postgres(pool) => postgres_citizens::payments(pool, key).await,
        }
    }

    /// The citizen's bills with their decisions, newest service date first.
    pub async fn citizen_bills(&self, key: &[u8]) -> Result<Vec<CitizenBill>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => {
                let key = key.to_vec();
                self.sqlite_read(move |read| bills_on(read, &key)).await
            }
            Backend::Postgres(pool) => postgres_reads::bills(pool, key).await,
        }
    }
}

macro_rules! citizens_backend {
    ($module:ident, $backend:ident, $Pool:ty) => {
        mod $module {
            use jiuzhu_core::Fen;
            use sqlx::Row as _;

            use super::{CitizenDetails, CitizenPayment, CodeMessage, CODES_PER_WINDOW, CODE_SECONDS, CODE_TRIES, CODE_WINDOW_SECONDS};
            use crate::database::$backend::{audit, begin_write};
            use crate::database::{json_string, now_text, StoreError};

            pub(super) async fn set_phone(
                pool: &$Pool,
                key: &[u8],
                person: &str,
                encrypted: &[u8],
                masked: &str,
                index: &[u8],
                actor: &str,
            ) -> Result<bool, StoreError> {
                let mut tx = begin_write(pool).await?;
                let known = sqlx::query("SELECT 1 FROM persons WHERE person_key = $1")
                    .bind(key.to_vec())
                    .fetch_optional(&mut *tx)
                    .await?;
                if known.is_none() {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO contacts (person_key, phone_encrypted, phone_masked, phone_index, recorded_at, \
                     recorded_by) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(key.to_vec())
                .bind(encrypted.to_vec())
                .bind(masked)
                .bind(index.to_vec())
                .bind(now_text())
                .bind(actor)
                .execute(&mut *tx)
                .await?;
                let details = format!("{{\"person\":{},\"phone\":{}}}", json_string(person), json_string(masked));
                audit(&mut tx, actor, "contact.set", &format!("person {person}"), details).await?;
                tx.commit().await?;
                Ok(true)
            }

            /// `None`: no match; `Some(Err)`: too many codes lately.
            pub(super) async fn make_code(
                pool: &$Pool,
                key: &[u8],
                index: &[u8],
                hash: &[u8],
                now: i64,
                message: CodeMessage,
            ) -> Result<Option<Result<i64, ()>>, StoreError> {
                let mut tx = begin_write(pool).await?;
                let current = sqlx::query("SELECT phone_index FROM contacts WHERE person_key = $1 ORDER BY id DESC LIMIT 1")
                    .bind(key.to_vec())
                    .fetch_optional(&mut *tx)
                    .await?;
                let matches = match current {
                    Some(row) => row.try_get::<Vec<u8>, _>(0)? == index,
                    None => false,
                };
                if !matches {
                    return Ok(None);
                }
                let recent: i64 = sqlx::query(
                    "SELECT COUNT(*) FROM login_codes WHERE person_key = $1 AND expires_unix > $2",
                )
                .bind(key.to_vec())
                .bind(now - CODE_WINDOW_SECONDS + CODE_SECONDS)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
                if recent >= CODES_PER_WINDOW {
                    return Ok(Some(Err(())));
                }
                let id: i64 = sqlx::query(
                    "INSERT INTO login_codes (person_key, code_hash, expires_unix, attempts, created_at) \
                     VALUES ($1, $2, $3, 0, $4) RETURNING id",
                )
                .bind(key.to_vec())
                .bind(hash.to_vec())
                .bind(now + CODE_SECONDS)
                .bind(now_text())
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
                // Only the newest code opens anything: the person's codes
                // not sent yet are never sent now (marked expired, their
                // message blanked).
                sqlx::query(
                    "UPDATE outbox SET expired_at = $1, sealed = NULL WHERE code_id IS NOT NULL \
                     AND sent_at IS NULL AND expired_at IS NULL AND person_key = $2",
                )
                .bind(now_text())
                .bind(key.to_vec())
                .execute(&mut *tx)
                .await?;
                // Its notification, with it: due at once, never sent after
                // the code expires.
                let now_ms = now.saturating_mul(1000);
                sqlx::query(
                    "INSERT INTO outbox (kind, person_key, person_masked, code_id, sealed, expires_unix_ms, \
                     created_at, next_attempt_unix_ms) \
                     SELECT $1, person_key, resident_id_masked, $2, $3, $4, $5, $6 FROM persons WHERE person_key = $7",
                )
                .bind(message.kind.as_str())
                .bind(id)
                .bind(message.sealed)
                .bind((now + CODE_SECONDS).saturating_mul(1000))
                .bind(now_text())
                .bind(now_ms)
                .bind(key.to_vec())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(Some(Ok(id)))
            }

            pub(super) async fn use_code(pool: &$Pool, key: &[u8], hash: &[u8], now: i64) -> Result<bool, StoreError> {
                let mut tx = begin_write(pool).await?;
                let latest = sqlx::query(
                    "SELECT id, code_hash, attempts FROM login_codes WHERE person_key = $1 AND used_at IS NULL \
                     AND expires_unix > $2 ORDER BY id DESC LIMIT 1",
                )
                .bind(key.to_vec())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(latest) = latest else {
                    return Ok(false);
                };
                let id: i64 = latest.try_get(0)?;
                let stored: Vec<u8> = latest.try_get(1)?;
                let attempts: i64 = latest.try_get(2)?;
                if attempts >= CODE_TRIES {
                    return Ok(false);
                }
                if stored != hash {
                    sqlx::query("UPDATE login_codes SET attempts = attempts + 1 WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    return Ok(false);
                }
                sqlx::query("UPDATE login_codes SET used_at = $1 WHERE id = $2")
                    .bind(now_text())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            pub(super) async fn details(pool: &$Pool, key: &[u8]) -> Result<CitizenDetails, StoreError> {
                let phone = sqlx::query("SELECT phone_masked FROM contacts WHERE person_key = $1 ORDER BY id DESC LIMIT 1")
                    .bind(key.to_vec())
                    .fetch_optional(pool)
                    .await?
                    .map(|row| row.try_get(0))
                    .transpose()?;
                let bank_account = sqlx::query(
                    "SELECT holder_name, bank, account_masked FROM bank_accounts WHERE person_key = $1 \
                     ORDER BY id DESC LIMIT 1",
                )
                .bind(key.to_vec())
                .fetch_optional(pool)
                .await?
                .map(|row| -> Result<_, StoreError> { Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)) })
                .transpose()?;
                Ok(CitizenDetails { phone, bank_account })
            }

            pub(super) async fn encrypted_id(pool: &$Pool, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
                let row = sqlx::query("SELECT resident_id_encrypted FROM persons WHERE person_key = $1")
                    .bind(key.to_vec())
                    .fetch_optional(pool)
                    .await?;
                Ok(row.map(|row| row.try_get(0)).transpose()?)
            }

            /// The phone on record: its blind index and its ciphertext.
            pub(super) async fn phone_index(pool: &$Pool, key: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>, StoreError> {
                let row = sqlx::query(
                    "SELECT phone_index, phone_encrypted FROM contacts WHERE person_key = $1 ORDER BY id DESC LIMIT 1",
                )
                .bind(key.to_vec())
                .fetch_optional(pool)
                .await?;
                Ok(row.map(|row| -> Result<_, sqlx::Error> { Ok((row.try_get(0)?, row.try_get(1)?)) }).transpose()?)
            }

            #[allow(clippy::too_many_arguments, reason = "the columns of one row")]
            pub(super) async fn set_account(
                pool: &$Pool,
                key: &[u8],
                person: &str,
                holder: &str,
                bank: &str,
                encrypted: &[u8],
                shown: &str,
                actor: &str,
            ) -> Result<(), StoreError> {
                let mut tx = begin_write(pool).await?;
                sqlx::query(
                    "INSERT INTO bank_accounts (person_key, holder_name, bank, account_encrypted, account_masked, \
                     recorded_at, recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(key.to_vec())
                .bind(holder)
                .bind(bank)
                .bind(encrypted.to_vec())
                .bind(shown)
                .bind(now_text())
                .bind(actor)
                .execute(&mut *tx)
                .await?;
                let details = format!(
                    "{{\"person\":{},\"bank\":{},\"account\":{}}}",
                    json_string(person),
                    json_string(bank),
                    json_string(shown)
                );
                audit(&mut tx, actor, "bank_account.change", &format!("person {person}"), details).await?;
                tx.commit().await?;
                Ok(())
            }

            pub(super) async fn masked(pool: &$Pool, key: &[u8]) -> Result<Option<String>, StoreError> {
                let row = sqlx::query("SELECT resident_id_masked FROM persons WHERE person_key = $1")
                    .bind(key.to_vec())
                    .fetch_optional(pool)
                    .await?;
                Ok(row.map(|row| row.try_get(0)).transpose()?)
            }

            pub(super) async fn payments(pool: &$Pool, key: &[u8]) -> Result<Vec<CitizenPayment>, StoreError> {
                let mut payments = Vec::new();
                for row in sqlx::query(
                    "SELECT l.id, l.status, l.amount, COALESCE(l.answered_at, b.created_at), l.reason \
                     FROM payment_lines l JOIN payment_batches b ON b.id = l.batch_id \
                     WHERE l.person_key = $1 ORDER BY l.id DESC",
                )
                .bind(key.to_vec())
                .fetch_all(pool)
                .await?
                {
                    let line: i64 = row.try_get(0)?;
                    let mut paying = Vec::new();
                    for item in sqlx::query(
                        "SELECT q.kind, q.reference FROM payment_items t JOIN payables q ON q.id = t.payable_id \
                         WHERE t.line_id = $1 ORDER BY q.id",
                    )
                    .bind(line)
                    .fetch_all(pool)
                    .await?
                    {
                        let kind: String = item.try_get(0)?;
                        let reference: String = item.try_get(1)?;
                        paying.push(format!("{kind}:{reference}"));
                    }
                    payments.push(CitizenPayment {
                        status: row.try_get(1)?,
                        amount: Fen::from_fen(row.try_get(2)?),
                        at: row.try_get(3)?,
                        paying,
                        reason: row.try_get(4)?,
                    });
                }
                // Owed and in no live line: feed and application decisions
                // not reversed, and top-ups.
                let waiting = sqlx::query(
                    "SELECT d.invoice_no, d.amount, d.decided_at FROM decisions d JOIN invoices i ON i.invoice_no = d.invoice_no \
                     WHERE d.person_key = $1 AND d.kind = 'decision' AND i.channel IN ('feed', 'application') \
                     AND d.amount > 0 AND NOT EXISTS (SELECT 1 FROM decisions r WHERE r.invoice_no = d.invoice_no \
                     AND r.kind = 'reversal') AND NOT EXISTS (SELECT 1 FROM payables q JOIN payment_items t \
                     ON t.payable_id = q.id AND t.live = 1 WHERE q.kind = 'decision' AND q.reference = d.invoice_no) \
                     UNION ALL SELECT CAST(c.id AS TEXT), c.amount, c.created_at FROM clearing_lines c \
                     WHERE c.person_key = $1 AND c.kind = 'top_up' AND NOT EXISTS (SELECT 1 FROM payables q \
                     JOIN payment_items t ON t.payable_id = q.id AND t.live = 1 WHERE q.kind = 'top_up' \
                     AND q.reference = CAST(c.id AS TEXT)) ORDER BY 3",
                )
                .bind(key.to_vec())
                .fetch_all(pool)
                .await?;
                for row in waiting {
                    let reference: String = row.try_get(0)?;
                    payments.push(CitizenPayment {
                        status: "waiting".into(),
                        amount: Fen::from_fen(row.try_get(1)?),
                        at: row.try_get(2)?,
                        paying: vec![reference],
                        reason: None,
                    });
                }
                Ok(payments)
            }
        }
    };
}

citizens_backend!(sqlite_citizens, sqlite, sqlx::SqlitePool);
citizens_backend!(postgres_citizens, postgres, sqlx::PgPool);

/// The blind index a citizen's session names (in hex).
fn key_of(subject: &str) -> Option<Vec<u8>> {
    if !subject.len().is_multiple_of(2) {
        return None;
    }
    (0..subject.len() / 2)
        .map(|at| u8::from_str_radix(subject.get(2 * at..2 * at + 2)?, 16).ok())
        .collect()
}

/// A citizen's session, blind index and masked ID, on a SQLite reader.
fn citizen_on(
    read: &rusqlite::Transaction<'_>,
    hash: &ApiKeyHash,
    now: i64,
) -> Result<Option<(WebSession, Vec<u8>, String)>, StoreError> {
    use rusqlite::OptionalExtension as _;
    let Some(session) = session_on(read, hash, "citizen", now)? else {
        return Ok(None);
    };
    let Some(key) = key_of(&session.subject) else {
        return Ok(None);
    };
    let masked: Option<String> = read
        .prepare_cached(MASKED_SQL)?
        .query_row([&key], |row| row.get(0))
        .optional()?;
    Ok(masked.map(|masked| (session, key, masked)))
}

/// A citizen's bills, on a SQLite reader.
fn bills_on(read: &rusqlite::Transaction<'_>, key: &[u8]) -> Result<Vec<CitizenBill>, StoreError> {
    let mut statement = read.prepare_cached(CITIZEN_BILLS_SQL)?;
    let rows = statement.query_map([key], |row| {
        Ok(CitizenBill {
            invoice_no: row.get(0)?,
            hospital: row.get(1)?,
            service_date: row.get(2)?,
            total: Fen::from_fen(row.get(3)?),
            in_scope_self_pay: Fen::from_fen(row.get(4)?),
            outcome: row.get(5)?,
            amount: Fen::from_fen(row.get(6)?),
            response: row.get(7)?,
            reversed: row.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// PostgreSQL: the same reads through its pool.
mod postgres_reads {
    use jiuzhu_core::Fen;
    use sqlx::Row as _;

    use super::{key_of, CitizenBill, WebSession, CITIZEN_BILLS_SQL, MASKED_SQL};
    use crate::crypto::ApiKeyHash;
    use crate::database::web_sessions::postgres_reads::session;
    use crate::database::StoreError;

    pub(super) async fn citizen(
        pool: &sqlx::PgPool,
        hash: &ApiKeyHash,
        now: i64,
    ) -> Result<Option<(WebSession, Vec<u8>, String)>, StoreError> {
        let Some(session) = session(pool, hash, "citizen", now).await? else {
            return Ok(None);
        };
        let Some(key) = key_of(&session.subject) else {
            return Ok(None);
        };
        let row = sqlx::query(MASKED_SQL)
            .bind(key.clone())
            .fetch_optional(pool)
            .await?;
        match row {
            Some(row) => Ok(Some((session, key, row.try_get(0)?))),
            None => Ok(None),
        }
    }

    pub(super) async fn bills(pool: &sqlx::PgPool, key: &[u8]) -> Result<Vec<CitizenBill>, StoreError> {
        let rows = sqlx::query(CITIZEN_BILLS_SQL)
            .bind(key.to_vec())
            .fetch_all(pool)
            .await?;
        let mut bills = Vec::with_capacity(rows.len());
        for row in rows {
            bills.push(CitizenBill {
                invoice_no: row.try_get(0)?,
                hospital: row.try_get(1)?,
                service_date: row.try_get(2)?,
                total: Fen::from_fen(row.try_get(3)?),
                in_scope_self_pay: Fen::from_fen(row.try_get(4)?),
                outcome: row.try_get(5)?,
                amount: Fen::from_fen(row.try_get(6)?),
                response: row.try_get(7)?,
                reversed: row.try_get(8)?,
            });
        }
        Ok(bills)
    }
}

/// The dashboard's figures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dashboard {
    /// Category code → persons with a current open or running spell.
    pub recipients: Vec<(String, u64)>,
    /// Month (`YYYY-MM`) → assistance granted for bills served then, in
    /// `year`, decisions not reversed.
    pub per_month: Vec<(String, Fen)>,
    /// Category code → assistance granted in `year`, decisions not
    /// reversed.
    pub per_category: Vec<(String, Fen)>,
    pub year: i32,
    /// What the sums are made of, for [`Store::dashboard_after`]: by
    /// service month and category, the amount and number of the year's
    /// decisions not reversed, of the decision rows up to `through`.
    granted: BTreeMap<(String, Option<String>), (i64, i64)>,
    through: i64,
}

/// Granted by service month and category: the amount and the number of
/// decisions, each row to add (or, for decisions reversed, to take away).
type GrantedRows = Vec<(String, Option<String>, i64, i64)>;

impl Store {
    /// Recipients by category today, and assistance per month of `year`.
    pub async fn dashboard(&self, today: &str, year: i32) -> Result<Dashboard, StoreError> {
        self.dashboard_after(today, year, None).await
    }

    /// The figures of [`Store::dashboard`], the sums of the year read on
    /// from `previous` (figures of the same year read earlier): only the
    /// decision rows written since are read, the new decisions added and
    /// the decisions reversed since taken away, rather than every bill of
    /// the year joined again. On SQLite, whose one writer commits rows in
    /// the order of their ids; PostgreSQL, whose sequences may commit out
    /// of order, sums the year again.
    pub async fn dashboard_after(
        &self,
        today: &str,
        year: i32,
        previous: Option<&Dashboard>,
    ) -> Result<Dashboard, StoreError> {
        let previous = previous.filter(|previous| previous.year == year);
        let (recipients, rows, through, mut granted) = match &self.backend {
            Backend::Sqlite(pool) => {
                let since = previous.map_or(0, |previous| previous.through);
                let (recipients, rows, through) = sqlite_dashboard::read(pool, today, year, since).await?;
                let granted = previous
                    .map(|previous| previous.granted.clone())
                    .unwrap_or_default();
                (recipients, rows, through, granted)
            }
            Backend::Postgres(pool) => {
                let (recipients, rows, through) = postgres_dashboard::read(pool, today, year, 0).await?;
                (recipients, rows, through, BTreeMap::new())
            }
        };
        for (month, category, amount, count) in rows {
            let entry = granted.entry((month, category)).or_default();
            entry.0 += amount;
            entry.1 += count;
        }
        granted.retain(|_, (_, count)| *count > 0);
        let mut per_month: BTreeMap<String, i64> = BTreeMap::new();
        let mut per_category: BTreeMap<String, i64> = BTreeMap::new();
        for ((month, category), (amount, _)) in &granted {
            *per_month.entry(month.clone()).or_default() += amount;
            if let Some(category) = category {
                *per_category.entry(category.clone()).or_default() += amount;
            }
        }
        let fen = |(key, amount): (String, i64)| (key, Fen::from_fen(amount));
        Ok(Dashboard {
            recipients,
            per_month: per_month.into_iter().map(fen).collect(),
            per_category: per_category.into_iter().map(fen).collect(),
            year,
            granted,
            through,
        })
    }
}

macro_rules! dashboard_backend {
    ($module:ident, $Pool:ty) => {
        mod $module {
            use sqlx::Row as _;

            use super::GrantedRows;
            use crate::database::StoreError;

            /// The year's decisions after `since` and up to `through`, not
            /// reversed up to `through`, by service month and category.
            const ADDED: &str = "SELECT SUBSTR(i.service_date, 1, 7), d.category, \
                CAST(SUM(d.amount) AS BIGINT), COUNT(*) \
                FROM decisions d JOIN invoices i ON i.invoice_no = d.invoice_no \
                WHERE d.id > $1 AND d.id <= $2 AND d.kind = 'decision' AND d.year = $3 \
                AND NOT EXISTS (SELECT 1 FROM decisions r WHERE r.invoice_no = d.invoice_no \
                AND r.kind = 'reversal' AND r.id <= $2) GROUP BY 1, 2";
            /// The year's decisions up to `since` reversed after it, by
            /// service month and category.
            const TAKEN_AWAY: &str = "SELECT SUBSTR(i.service_date, 1, 7), d.category, \
                CAST(SUM(d.amount) AS BIGINT), COUNT(*) \
                FROM decisions r JOIN decisions d ON d.invoice_no = r.invoice_no AND d.kind = 'decision' \
                JOIN invoices i ON i.invoice_no = d.invoice_no \
                WHERE r.id > $1 AND r.id <= $2 AND r.kind = 'reversal' AND d.id <= $1 AND d.year = $3 \
                GROUP BY 1, 2";

            /// Recipients by category; granted by month and category after
            /// the decision row `since` (to add, or to take away); the last
            /// decision row read. In one read transaction.
            pub(super) async fn read(
                pool: &$Pool,
                today: &str,
                year: i32,
                since: i64,
            ) -> Result<(Vec<(String, u64)>, GrantedRows, i64), StoreError> {
                let mut read = pool.begin().await?;
                let through: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM decisions")
                    .fetch_one(&mut *read)
                    .await?;
                let mut recipients = Vec::new();
                for row in sqlx::query(
                    "SELECT category, COUNT(DISTINCT person_key) FROM spells WHERE superseded_by IS NULL \
                     AND valid_from <= $1 AND (valid_to IS NULL OR valid_to >= $1) GROUP BY category ORDER BY category",
                )
                .bind(today)
                .fetch_all(&mut *read)
                .await?
                {
                    let count: i64 = row.try_get(1)?;
                    recipients.push((row.try_get(0)?, count as u64));
                }
                let mut granted = Vec::new();
                for (sql, sign) in [(ADDED, 1), (TAKEN_AWAY, -1)] {
                    if sign < 0 && since == 0 {
                        continue;
                    }
                    for row in sqlx::query(sql)
                        .bind(since)
                        .bind(through)
                        .bind(i64::from(year))
                        .fetch_all(&mut *read)
                        .await?
                    {
                        let amount: i64 = row.try_get(2)?;
                        let count: i64 = row.try_get(3)?;
                        granted.push((row.try_get(0)?, row.try_get(1)?, sign * amount, sign * count));
                    }
                }
                read.commit().await?;
                Ok((recipients, granted, through))
            }
        }
    };
}

dashboard_backend!(sqlite_dashboard, sqlx::SqlitePool);
dashboard_backend!(postgres_dashboard, sqlx::PgPool);
