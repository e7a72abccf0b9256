//! Staff users administered: a member of staff's roles changed, disabled
//! with a reason (their web sessions end and their API tokens are revoked
//! at once; their password opens nothing while disabled) and enabled again.
//!
//! The guards hold here, for the console and the command line alike: an
//! admin cannot disable themselves nor remove their own admin role, and
//! the last enabled admin can never be disabled nor lose the role. Every
//! change is audited in the same transaction: roles from and to, the
//! reason of a disabling, an enabling.

use thiserror::Error;

use super::applications::Role;
use super::console::StaffListing;
use super::{Backend, Store, StoreError};

/// The longest reason kept for disabling a member of staff, in characters.
pub const LONGEST_DISABLE_REASON: usize = 500;

/// Why a change of a member of staff was refused; nothing was changed.
#[derive(Debug, Error)]
pub enum StaffError {
    #[error("{0} is not a member of staff")]
    NotFound(String),
    #[error("a member of staff needs at least one role")]
    NoRole,
    #[error("a reason is required to disable a member of staff")]
    ReasonRequired,
    #[error("the reason is longer than {LONGEST_DISABLE_REASON} characters")]
    ReasonTooLong,
    #[error("{0} cannot disable themselves")]
    SelfDisable(String),
    #[error("{0} cannot remove their own admin role")]
    SelfAdminRemoval(String),
    #[error("{0} is the last enabled admin: enable or appoint another admin first")]
    LastAdmin(String),
    #[error("{0} is disabled already")]
    AlreadyDisabled(String),
    #[error("{0} is not disabled")]
    NotDisabled(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl StaffError {
    /// The key of the words that say it on the pages.
    pub fn key(&self) -> &'static str {
        match self {
            StaffError::NotFound(_) => "not_found",
            StaffError::NoRole => "no_role",
            StaffError::ReasonRequired => "reason_required",
            StaffError::ReasonTooLong => "reason_too_long",
            StaffError::SelfDisable(_) => "self_disable",
            StaffError::SelfAdminRemoval(_) => "self_admin_removal",
            StaffError::LastAdmin(_) => "last_admin",
            StaffError::AlreadyDisabled(_) => "already_disabled",
            StaffError::NotDisabled(_) => "not_disabled",
            StaffError::Store(_) => "server_error",
        }
    }
}

impl From<sqlx::Error> for StaffError {
    fn from(error: sqlx::Error) -> StaffError {
        StaffError::Store(StoreError::from(error))
    }
}

/// Roles as stored: sorted, once each, space-separated.
pub(super) fn roles_text(roles: &[Role]) -> String {
    let mut sorted = roles.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
        .iter()
        .map(|role| role.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether stored roles hold `admin`.
pub(super) fn holds_admin(roles: &str) -> bool {
    roles.split(' ').any(|role| role == Role::Admin.as_str())
}

impl Store {
    /// One member of staff, enabled or not, as the console shows them.
    pub async fn staff_member(&self, name: &str) -> Result<Option<StaffListing>, StoreError> {
        Ok(self
            .staff_users()
            .await?
            .into_iter()
            .find(|member| member.name == name))
    }

    /// Sets a member of staff's roles. Returns whether they changed (an
    /// unchanged set changes nothing and is not audited).
    pub async fn set_staff_roles(&self, name: &str, roles: &[Role], actor: &str) -> Result<bool, StaffError> {
        if roles.is_empty() {
            return Err(StaffError::NoRole);
        }
        let roles = roles_text(roles);
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_staff::set_roles(pool, name, &roles, actor).await,
            Backend::Postgres(pool) => postgres_staff::set_roles(pool, name, &roles, actor).await,
        }
    }

    /// Disables a member of staff: their sessions end and their API tokens
    /// are revoked for good; their password opens nothing until they are
    /// enabled again.
    pub async fn disable_staff(&self, name: &str, reason: &str, actor: &str) -> Result<(), StaffError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(StaffError::ReasonRequired);
        }
        if reason.chars().count() > LONGEST_DISABLE_REASON {
            return Err(StaffError::ReasonTooLong);
        }
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_staff::disable(pool, name, reason, actor).await,
            Backend::Postgres(pool) => postgres_staff::disable(pool, name, reason, actor).await,
        }
    }

    /// Enables a disabled member of staff again.
    pub async fn enable_staff(&self, name: &str, actor: &str) -> Result<(), StaffError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_staff::enable(pool, name, actor).await,
            Backend::Postgres(pool) => postgres_staff::enable(pool, name, actor).await,
        }
    }
}

macro_rules! staff_backend {
    ($module:ident, $backend:ident, $Pool:ty, $Db:ty) => {
        mod $module {
            use sqlx::Row as _;

            use super::{holds_admin, StaffError};
            use crate::database::$backend::{audit, begin_write};
            use crate::database::{json_string, now_text};

            type Tx<'t> = sqlx::Transaction<'t, $Db>;

            /// The member's roles and whether they are enabled.
            async fn member(tx: &mut Tx<'_>, name: &str) -> Result<(String, bool), StaffError> {
                let row = sqlx::query("SELECT roles, disabled_at FROM staff_users WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut **tx)
                    .await?
                    .ok_or_else(|| StaffError::NotFound(name.to_owned()))?;
                let disabled: Option<String> = row.try_get(1)?;
                Ok((row.try_get(0)?, disabled.is_none()))
            }

            /// Whether an enabled admin other than `name` remains.
            async fn another_admin(tx: &mut Tx<'_>, name: &str) -> Result<bool, StaffError> {
                let rows =
                    sqlx::query("SELECT roles FROM staff_users WHERE disabled_at IS NULL AND name <> $1")
                        .bind(name)
                        .fetch_all(&mut **tx)
                        .await?;
                for row in rows {
                    if holds_admin(&row.try_get::<String, _>(0)?) {
                        return Ok(true);
                    }
                }
                Ok(false)
            }

            pub(super) async fn set_roles(
                pool: &$Pool,
                name: &str,
                roles: &str,
                actor: &str,
            ) -> Result<bool, StaffError> {
                let mut tx = begin_write(pool).await?;
                let (before, enabled) = member(&mut tx, name).await?;
                if before == roles {
                    return Ok(false);
                }
                if enabled && holds_admin(&before) && !holds_admin(roles) {
                    if name == actor {
                        return Err(StaffError::SelfAdminRemoval(name.to_owned()));
                    }
                    if !another_admin(&mut tx, name).await? {
                        return Err(StaffError::LastAdmin(name.to_owned()));
                    }
                }
                sqlx::query("UPDATE staff_users SET roles = $1 WHERE name = $2")
                    .bind(roles)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                let details = format!(
                    "{{\"from\":{},\"to\":{}}}",
                    json_string(&before),
                    json_string(roles)
                );
                audit(
                    &mut tx,
                    actor,
                    "staff.roles",
                    &format!("staff {name}"),
                    details,
                )
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            pub(super) async fn disable(
                pool: &$Pool,
                name: &str,
                reason: &str,
                actor: &str,
            ) -> Result<(), StaffError> {
                let mut tx = begin_write(pool).await?;
                let (roles, enabled) = member(&mut tx, name).await?;
                if name == actor {
                    return Err(StaffError::SelfDisable(name.to_owned()));
                }
                if !enabled {
                    return Err(StaffError::AlreadyDisabled(name.to_owned()));
                }
                if holds_admin(&roles) && !another_admin(&mut tx, name).await? {
                    return Err(StaffError::LastAdmin(name.to_owned()));
                }
                let now = now_text();
                sqlx::query(
                    "UPDATE staff_users SET disabled_at = $1, disabled_by = $2, disabled_reason = $3 \
                     WHERE name = $4",
                )
                .bind(&now)
                .bind(actor)
                .bind(reason)
                .bind(name)
                .execute(&mut *tx)
                .await?;
                // Their web sessions end now, not only while disabled.
                sqlx::query(
                    "UPDATE web_sessions SET ended_at = $1 WHERE kind = 'staff' AND subject = $2 \
                     AND ended_at IS NULL",
                )
                .bind(&now)
                .bind(name)
                .execute(&mut *tx)
                .await?;
                // Their API tokens are revoked for good: enabled again,
                // they get a new one (`staff add`), not the old ones back.
                let revoked = sqlx::query(
                    "UPDATE staff_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
                )
                .bind(&now)
                .bind(name)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                let details = format!(
                    "{{\"reason\":{},\"tokens_revoked\":{revoked}}}",
                    json_string(reason)
                );
                audit(
                    &mut tx,
                    actor,
                    "staff.disable",
                    &format!("staff {name}"),
                    details,
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }

            pub(super) async fn enable(pool: &$Pool, name: &str, actor: &str) -> Result<(), StaffError> {
                let mut tx = begin_write(pool).await?;
                let (_, enabled) = member(&mut tx, name).await?;
                if enabled {
                    return Err(StaffError::NotDisabled(name.to_owned()));
                }
                sqlx::query(
                    "UPDATE staff_users SET disabled_at = NULL, disabled_by = NULL, disabled_reason = NULL \
                     WHERE name = $1",
                )
                .bind(name)
                .execute(&mut *tx)
                .await?;
                audit(
                    &mut tx,
                    actor,
                    "staff.enable",
                    &format!("staff {name}"),
                    "{}".to_owned(),
                )
                .await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

staff_backend!(sqlite_staff, sqlite, sqlx::SqlitePool, sqlx::Sqlite);
staff_backend!(postgres_staff, postgres, sqlx::PgPool, sqlx::Postgres);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_stored_sorted_once_each() {
        assert_eq!(
            roles_text(&[Role::Admin, Role::Reviewer, Role::Admin]),
            "reviewer admin"
        );
        assert!(holds_admin("reviewer admin") && !holds_admin("reviewer auditor"));
    }
}
