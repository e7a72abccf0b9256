//! Staff passwords and the sessions of the web pages.
//!
//! A password is kept only as its Argon2id hash (a PHC string with its own
//! salt). A session's token lives in the browser's cookie; the store keeps
//! its SHA-256, its CSRF token, whose it is and when it ends. A session
//! ended (logout) or expired opens nothing.

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::Argon2;

use super::applications::{ApplicationError, Role, StaffUser};
use super::citizens::LoginChannel;
use super::{json_string, Backend, Store, StoreError};
use crate::crypto::{ApiKey, ApiKeyHash};

/// A session of a kind (`staff` or `citizen`) a token opens: known, not
/// ended, not expired. Both backends and both read paths run it.
pub(crate) const SESSION_SQL: &str = "SELECT subject, csrf, expires_unix FROM web_sessions \
     WHERE token_hash = $1 AND kind = $2 AND ended_at IS NULL AND expires_unix > $3";

/// A staff session a token opens with its member of staff's roles: the
/// session known, not ended, not expired; the member not disabled.
const STAFF_SESSION_SQL: &str = "SELECT s.subject, s.csrf, s.expires_unix, u.roles FROM web_sessions s \
     JOIN staff_users u ON u.name = s.subject WHERE s.token_hash = $1 AND s.kind = 'staff' \
     AND s.ended_at IS NULL AND s.expires_unix > $2 AND u.disabled_at IS NULL";

/// The shortest password accepted.
pub const SHORTEST_PASSWORD: usize = 10;

/// A session of the web pages, as its token finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// A member of staff's name.
    pub subject: String,
    /// The token every form of the session carries.
    pub csrf: String,
    pub expires_unix: i64,
}

/// A new session: the cookie's token and the forms' CSRF token, each shown
/// once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub token: String,
    pub csrf: String,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

fn random_token() -> Result<String, StoreError> {
    Ok(ApiKey::generate()?.0.into_string())
}

impl Store {
    /// Sets a member of staff's password (Argon2id).
    pub async fn set_staff_password(
        &self,
        name: &str,
        password: &str,
        actor: &str,
    ) -> Result<(), ApplicationError> {
        if password.chars().count() < SHORTEST_PASSWORD {
            return Err(ApplicationError::Invalid(format!(
                "a password has at least {SHORTEST_PASSWORD} characters"
            )));
        }
        if self.staff(name).await?.is_none() {
            return Err(ApplicationError::NotStaff(name.to_owned()));
        }
        let hash = Argon2::default()
            .hash_password(password.as_bytes())
            .map_err(|error| StoreError::Damaged(format!("a password could not be hashed: {error}")))?
            .to_string();
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_sessions::set_password(pool, name, &hash, actor).await?,
            Backend::Postgres(pool) => postgres_sessions::set_password(pool, name, &hash, actor).await?,
        }
        Ok(())
    }

    /// The member of staff whose name and password these are, if they are.
    /// The hash is checked on a blocking thread: Argon2 is slow on purpose.
    pub async fn staff_login(&self, name: &str, password: &str) -> Result<Option<StaffUser>, StoreError> {
        let hash = match &self.backend {
            Backend::Sqlite(pool) => sqlite_sessions::password_hash(pool, name).await?,
            Backend::Postgres(pool) => postgres_sessions::password_hash(pool, name).await?,
        };
        let Some(hash) = hash else {
            return Ok(None);
        };
        let password = password.to_owned();
        let verified = tokio::task::spawn_blocking(move || {
            Argon2::default()
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok()
        })
        .await
        .map_err(|error| StoreError::NotCommitted(format!("the password check stopped: {error}")))?;
        if !verified {
            return Ok(None);
        }
        self.staff(name).await
    }

    /// Opens a session for a member of staff, lasting `seconds`.
    pub async fn open_session(&self, subject: &str, seconds: i64) -> Result<NewSession, StoreError> {
        self.open_session_of("staff", subject, seconds, subject, None)
            .await
    }

    /// Opens a session of `kind` (`staff` or `citizen`) for `subject`; the
    /// audit log names `shown` (a citizen's masked ID) and the `channel` a
    /// citizen logged in by.
    pub(crate) async fn open_session_of(
        &self,
        kind: &'static str,
        subject: &str,
        seconds: i64,
        shown: &str,
        channel: Option<LoginChannel>,
    ) -> Result<NewSession, StoreError> {
        let token = random_token()?;
        let csrf = random_token()?;
        let hash = ApiKeyHash::of(&token);
        let expires = unix_now() + seconds;
        let details = channel.map_or_else(
            || "{}".to_owned(),
            |channel| format!("{{\"channel\":{}}}", json_string(channel.as_str())),
        );
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlite_sessions::open(pool, &hash, kind, subject, &csrf, expires, shown, details).await?
            }
            Backend::Postgres(pool) => {
                postgres_sessions::open(pool, &hash, kind, subject, &csrf, expires, shown, details).await?
            }
        }
        Ok(NewSession { token, csrf })
    }

    /// The session a token opens, if it is known, not ended, not expired
    /// and its member of staff not disabled: one read.
    pub async fn session(&self, token: &str) -> Result<Option<(WebSession, StaffUser)>, StoreError> {
        let hash = ApiKeyHash::of(token);
        let now = unix_now();
        let found = match &self.backend {
            Backend::Sqlite(_) => {
                self.sqlite_read(move |read| staff_session_on(read, &hash, now))
                    .await?
            }
            Backend::Postgres(pool) => postgres_reads::staff_session(pool, &hash, now).await?,
        };
        Ok(found.map(|(session, roles)| {
            let user = StaffUser {
                name: session.subject.clone(),
                roles: roles.split(' ').filter_map(Role::parse).collect(),
            };
            (session, user)
        }))
    }

    /// Ends a session (logout).
    pub async fn end_session(&self, token: &str) -> Result<(), StoreError> {
        let hash = ApiKeyHash::of(token);
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_sessions::end(pool, &hash).await,
            Backend::Postgres(pool) => postgres_sessions::end(pool, &hash).await,
        }
    }
}

macro_rules! sessions_backend {
    ($module:ident, $backend:ident, $Pool:ty) => {
        mod $module {
            use sqlx::Row as _;

            use crate::crypto::ApiKeyHash;
            use crate::database::$backend::{audit, begin_write};
            use crate::database::{now_text, StoreError};

            pub(super) async fn set_password(
                pool: &$Pool,
                name: &str,
                hash: &str,
                actor: &str,
            ) -> Result<(), StoreError> {
                let mut tx = begin_write(pool).await?;
                sqlx::query("UPDATE staff_users SET password_hash = $1 WHERE name = $2")
                    .bind(hash)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                // Every session of theirs ends with the old password.
                sqlx::query("UPDATE web_sessions SET ended_at = $1 WHERE subject = $2 AND ended_at IS NULL")
                    .bind(now_text())
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                audit(
                    &mut tx,
                    actor,
                    "staff.password",
                    &format!("staff {name}"),
                    "{}".to_owned(),
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }

            pub(super) async fn password_hash(
                pool: &$Pool,
                name: &str,
            ) -> Result<Option<String>, StoreError> {
                let row = sqlx::query(
                    "SELECT password_hash FROM staff_users WHERE name = $1 AND disabled_at IS NULL \
                     AND password_hash IS NOT NULL",
                )
                .bind(name)
                .fetch_optional(pool)
                .await?;
                Ok(row.map(|row| row.try_get(0)).transpose()?)
            }

            #[allow(
                clippy::too_many_arguments,
                reason = "the columns of one row and its audit entry"
            )]
            pub(super) async fn open(
                pool: &$Pool,
                hash: &ApiKeyHash,
                kind: &str,
                subject: &str,
                csrf: &str,
                expires: i64,
                shown: &str,
                details: String,
            ) -> Result<(), StoreError> {
                let mut tx = begin_write(pool).await?;
                sqlx::query(
                    "INSERT INTO web_sessions (token_hash, kind, subject, csrf, created_at, expires_unix) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(hash.as_bytes().to_vec())
                .bind(kind)
                .bind(subject)
                .bind(csrf)
                .bind(now_text())
                .bind(expires)
                .execute(&mut *tx)
                .await?;
                let (actor, action, what) = if kind == "staff" {
                    (shown.to_owned(), "staff.login", format!("staff {shown}"))
                } else {
                    (
                        format!("citizen:{shown}"),
                        "citizen.login",
                        format!("person {shown}"),
                    )
                };
                audit(&mut tx, &actor, action, &what, details).await?;
                tx.commit().await?;
                Ok(())
            }

            pub(super) async fn end(pool: &$Pool, hash: &ApiKeyHash) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE web_sessions SET ended_at = $1 WHERE token_hash = $2 AND ended_at IS NULL",
                )
                .bind(now_text())
                .bind(hash.as_bytes().to_vec())
                .execute(pool)
                .await?;
                Ok(())
            }
        }
    };
}

sessions_backend!(sqlite_sessions, sqlite, sqlx::SqlitePool);
sessions_backend!(postgres_sessions, postgres, sqlx::PgPool);

/// The session `SESSION_SQL` finds, on a SQLite reader.
pub(crate) fn session_on(
    read: &rusqlite::Transaction<'_>,
    hash: &ApiKeyHash,
    kind: &str,
    now: i64,
) -> Result<Option<WebSession>, StoreError> {
    use rusqlite::OptionalExtension as _;
    Ok(read
        .prepare_cached(SESSION_SQL)?
        .query_row(rusqlite::params![&hash.as_bytes()[..], kind, now], |row| {
            Ok(WebSession {
                subject: row.get(0)?,
                csrf: row.get(1)?,
                expires_unix: row.get(2)?,
            })
        })
        .optional()?)
}

/// The staff session and roles `STAFF_SESSION_SQL` finds, on a SQLite
/// reader.
fn staff_session_on(
    read: &rusqlite::Transaction<'_>,
    hash: &ApiKeyHash,
    now: i64,
) -> Result<Option<(WebSession, String)>, StoreError> {
    use rusqlite::OptionalExtension as _;
    Ok(read
        .prepare_cached(STAFF_SESSION_SQL)?
        .query_row(rusqlite::params![&hash.as_bytes()[..], now], |row| {
            let session = WebSession {
                subject: row.get(0)?,
                csrf: row.get(1)?,
                expires_unix: row.get(2)?,
            };
            Ok((session, row.get(3)?))
        })
        .optional()?)
}

/// PostgreSQL: the same reads through its pool.
pub(crate) mod postgres_reads {
    use sqlx::Row as _;

    use super::{WebSession, SESSION_SQL, STAFF_SESSION_SQL};
    use crate::crypto::ApiKeyHash;
    use crate::database::StoreError;

    fn session_of(row: &sqlx::postgres::PgRow) -> Result<WebSession, StoreError> {
        Ok(WebSession {
            subject: row.try_get(0)?,
            csrf: row.try_get(1)?,
            expires_unix: row.try_get(2)?,
        })
    }

    pub(crate) async fn session(
        pool: &sqlx::PgPool,
        hash: &ApiKeyHash,
        kind: &str,
        now: i64,
    ) -> Result<Option<WebSession>, StoreError> {
        let row = sqlx::query(SESSION_SQL)
            .bind(hash.as_bytes().to_vec())
            .bind(kind)
            .bind(now)
            .fetch_optional(pool)
            .await?;
        row.as_ref().map(session_of).transpose()
    }

    pub(super) async fn staff_session(
        pool: &sqlx::PgPool,
        hash: &ApiKeyHash,
        now: i64,
    ) -> Result<Option<(WebSession, String)>, StoreError> {
        let row = sqlx::query(STAFF_SESSION_SQL)
            .bind(hash.as_bytes().to_vec())
            .bind(now)
            .fetch_optional(pool)
            .await?;
        match row {
            Some(row) => Ok(Some((session_of(&row)?, row.try_get(3)?))),
            None => Ok(None),
        }
    }
}
