//! What the staff console reads and writes, on both backends: policy
//! versions, the what-if, clearings and their lines, staff users, API keys
//! listed and revoked one by one.

use std::collections::BTreeMap;

use jiuzhu_core::{Batch, Period, SpellBook};
use jiuzhu_formats::{parse_policy, read_batch_invoices, read_spells};
use jiuzhu_store::{ApplicationError, KeyOwner, Role, StaffError, WhatIfError};

use super::{
    fresh_databases, import, prepared, read, settle_all, with_policy, INVOICES, LATE_SPELL, POLICY, SPELLS,
};

const WHAT_IF_POLICY: &str = "fixtures/what-if-policy.toml";

/// The engine straight from the files: each 2024 bill's amount under the
/// example policy and under the proposed one, summed (now, then, persons
/// whose total changes, per category code).
#[allow(clippy::type_complexity)]
fn engine_what_if() -> (i64, i64, u64, BTreeMap<String, (i64, i64)>, (u64, u64)) {
    let current = parse_policy(POLICY, &read(POLICY)).unwrap();
    let proposed = parse_policy(WHAT_IF_POLICY, &read(WHAT_IF_POLICY)).unwrap();
    let known: Vec<String> = current
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let spells = read_spells("spells.csv", read(SPELLS).as_bytes(), Some(&current)).unwrap();
    let batch = Batch::new(
        read_batch_invoices(INVOICES, read(INVOICES).as_bytes(), &known).unwrap(),
        known,
    );
    let now = batch
        .run(&current, &SpellBook::new_lenient(&current, &spells).0, &|_| {})
        .unwrap();
    let then = batch
        .run(&proposed, &SpellBook::new_lenient(&proposed, &spells).0, &|_| {})
        .unwrap();
    let (mut before, mut after) = (0, 0);
    let mut persons: BTreeMap<String, i64> = BTreeMap::new();
    let mut categories: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (index, invoice) in batch.invoices().iter().enumerate() {
        if invoice.service_date.year() != 2024 {
            continue;
        }
        let (a, b) = (now.decision(index), then.decision(index));
        before += a.amount.fen();
        after += b.amount.fen();
        *persons.entry(invoice.person.to_string()).or_default() += b.amount.fen() - a.amount.fen();
        if let Some(category) = a.category() {
            categories
                .entry(current.category(category).code.clone())
                .or_default()
                .0 += a.amount.fen();
        }
        if let Some(category) = b.category() {
            categories
                .entry(proposed.category(category).code.clone())
                .or_default()
                .1 += b.amount.fen();
        }
    }
    let changed = persons.values().filter(|change| **change != 0).count() as u64;
    // Each number once: the store keeps one bill of a number the file
    // repeats.
    let bills = batch
        .invoices()
        .iter()
        .filter(|invoice| invoice.service_date.year() == 2024)
        .map(|invoice| invoice.invoice_no.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    (before, after, changed, categories, (bills, persons.len() as u64))
}

#[tokio::test]
async fn the_what_if_reads_the_years_stored_bills_and_agrees_with_the_engine_storing_nothing() {
    for database in fresh_databases("console_what_if").await {
        let (store, _) = prepared(&database).await;
        settle_all(&store).await;
        let proposed = parse_policy(WHAT_IF_POLICY, &read(WHAT_IF_POLICY)).unwrap();
        let what_if = store.what_if(2024, &proposed).await.unwrap();
        let (now, then, changed, categories, (bills, persons)) = engine_what_if();
        assert_ne!(now, then);
        assert_eq!((what_if.invoices, what_if.persons), (bills, persons));
        assert_eq!(
            (
                what_if.total_now.fen(),
                what_if.total_then.fen(),
                what_if.persons_changed
            ),
            (now, then, changed),
            "{}",
            database.url()
        );
        assert_eq!(what_if.difference().fen(), then - now);
        for category in &what_if.categories {
            let (before, after) = categories.get(&category.code).copied().unwrap_or_default();
            assert_eq!(
                (category.amount_now.fen(), category.amount_then.fen()),
                (before, after),
                "{}",
                category.code
            );
        }
        // Under the policy in force itself, nothing changes.
        let current = parse_policy(POLICY, &read(POLICY)).unwrap();
        let same = store.what_if(2024, &current).await.unwrap();
        assert_eq!((same.total_then, same.persons_changed), (what_if.total_now, 0));
        // Another year holds other bills; nothing was stored.
        assert_eq!(store.what_if(2023, &proposed).await.unwrap().invoices, 1);
        // A reversed bill is not recomputed.
        store
            .reverse("H001", &jiuzhu_core::InvoiceNo::parse("INV002").unwrap(), "H001")
            .await
            .unwrap();
        let reversed = store.what_if(2024, &current).await.unwrap();
        assert_eq!(reversed.invoices, bills - 1);
        assert_eq!(reversed.persons_changed, 0);
        let versions = store.policy_versions().await.unwrap();
        assert_eq!(versions.len(), 1);
        assert!(versions[0].in_force && versions[0].loaded_by == "admin");
        // A proposal that maps no pool for a stored visit type says which.
        let narrow = read(WHAT_IF_POLICY).replace("emergency", "urgent");
        if let Ok(narrow) = parse_policy("narrow.toml", &narrow) {
            match store.what_if(2024, &narrow).await {
                Err(WhatIfError::UnknownVisitTypes(types)) => {
                    assert!(types.contains(&"emergency".to_owned()))
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn clearings_are_listed_with_their_tallies_and_lines_masked() {
    for database in fresh_databases("console_clearings").await {
        let (store, _) = prepared(&database).await;
        settle_all(&store).await;
        import(&store, "late.csv", "民政", LATE_SPELL).await.unwrap();
        let report = store
            .run_clearing(Period::parse("2024-06").unwrap(), "admin", &|_| {})
            .await
            .unwrap();
        let runs = store.clearing_runs().await.unwrap();
        assert_eq!(runs.len(), 1);
        let run = &runs[0];
        assert_eq!(
            (run.id, run.period.as_str(), run.year, run.run_by.as_str()),
            (report.clearing_id, "2024-06", 2024, "admin")
        );
        assert_eq!((run.top_ups, run.top_up_total), report.top_ups());
        assert_eq!((run.recoveries, run.recovery_total), report.recoveries());
        let (_, lines) = store.clearing_run(report.clearing_id).await.unwrap().unwrap();
        let shown: Vec<(String, i64, i64, i64)> = lines
            .iter()
            .map(|line| {
                (
                    line.person_masked.clone(),
                    line.year,
                    line.granted.fen(),
                    line.difference().fen(),
                )
            })
            .collect();
        let expected: Vec<(String, i64, i64, i64)> = report
            .differences
            .iter()
            .map(|row| {
                (
                    row.person_id.masked(),
                    i64::from(row.year),
                    row.granted.fen(),
                    row.difference().fen(),
                )
            })
            .collect();
        assert_eq!(shown, expected);
        assert!(store
            .clearing_run(report.clearing_id + 1)
            .await
            .unwrap()
            .is_none());
    }
}

#[tokio::test]
async fn keys_are_listed_without_secrets_with_their_maker_and_revoked_one_at_a_time() {
    for database in fresh_databases("console_keys").await {
        let (store, keys) = prepared(&database).await;
        store.add_staff("aud", &[Role::Auditor], "admin").await.unwrap();
        let department = store.create_department_key("民政", "ops").await.unwrap();
        let listed = store.api_keys().await.unwrap();
        assert_eq!(listed.len(), keys.len() + 1);
        assert!(listed
            .iter()
            .filter(|key| key.owner == KeyOwner::Hospital)
            .all(|key| key.created_by == "admin" && key.revoked_at.is_none()));
        let last = listed.last().unwrap();
        assert_eq!(
            (last.owner, last.whose.as_str(), last.created_by.as_str()),
            (KeyOwner::Department, "民政", "ops")
        );
        let h001 = listed.iter().find(|key| key.whose == "H001").unwrap();
        assert!(store
            .revoke_key(KeyOwner::Hospital, h001.id, "admin")
            .await
            .unwrap());
        assert!(!store
            .revoke_key(KeyOwner::Hospital, h001.id, "admin")
            .await
            .unwrap());
        assert_eq!(store.hospital_for_key(&keys["H001"]).await.unwrap(), None);
        assert_eq!(
            store.hospital_for_key(&keys["H002"]).await.unwrap().as_deref(),
            Some("H002")
        );
        assert!(store
            .revoke_key(KeyOwner::Department, last.id, "admin")
            .await
            .unwrap());
        assert_eq!(store.department_for_key(department.as_str()).await.unwrap(), None);
        assert!(store.verify_audit().await.unwrap().is_ok());

        let users = store.staff_users().await.unwrap();
        assert_eq!(users.len(), 1);
        assert_eq!(
            (
                users[0].name.as_str(),
                users[0].roles.as_slice(),
                users[0].has_password
            ),
            ("aud", &[Role::Auditor][..], false)
        );
    }
}

#[tokio::test]
async fn a_member_of_staffs_roles_change_and_they_are_disabled_and_enabled_each_change_audited() {
    for database in fresh_databases("console_staff_changes").await {
        let store = with_policy(&database).await;
        store.add_staff("boss", &[Role::Admin], "setup").await.unwrap();
        let token = store.add_staff("clerk", &[Role::Reviewer], "boss").await.unwrap();
        store
            .set_staff_password("clerk", "a long password", "boss")
            .await
            .unwrap();
        let session = store.open_session("clerk", 3600).await.unwrap();
        assert!(store.session(&session.token).await.unwrap().is_some());

        // Roles: changed and audited from and to; the same set changes nothing.
        assert!(store
            .set_staff_roles("clerk", &[Role::Approver, Role::Reviewer], "boss")
            .await
            .unwrap());
        assert!(!store
            .set_staff_roles("clerk", &[Role::Reviewer, Role::Approver], "boss")
            .await
            .unwrap());
        assert_eq!(
            database
                .number(
                    "SELECT COUNT(*) FROM audit_log WHERE action = 'staff.roles' AND actor = 'boss' \
                     AND subject = 'staff clerk' AND details = '{\"from\":\"reviewer\",\"to\":\"reviewer approver\"}'"
                )
                .await,
            1
        );
        assert_eq!(
            database
                .number("SELECT COUNT(*) FROM audit_log WHERE action = 'staff.roles'")
                .await,
            1
        );

        // Disabled with a reason: the session ends at once, the token is
        // revoked and the password opens nothing; the listing says since
        // when, by whom, why.
        store
            .disable_staff("clerk", " left the bureau ", "boss")
            .await
            .unwrap();
        assert!(store.session(&session.token).await.unwrap().is_none());
        assert_eq!(
            database
                .number("SELECT COUNT(*) FROM web_sessions WHERE subject = 'clerk' AND ended_at IS NULL")
                .await,
            0
        );
        assert!(store.staff_for_token(&token).await.unwrap().is_none());
        assert!(store
            .staff_login("clerk", "a long password")
            .await
            .unwrap()
            .is_none());
        assert!(store.staff("clerk").await.unwrap().is_none());
        let clerk = store.staff_member("clerk").await.unwrap().unwrap();
        assert!(clerk.disabled_at.is_some());
        assert_eq!(
            (clerk.disabled_by.as_deref(), clerk.disabled_reason.as_deref()),
            (Some("boss"), Some("left the bureau"))
        );
        assert_eq!(
            database
                .number(
                    "SELECT COUNT(*) FROM audit_log WHERE action = 'staff.disable' AND actor = 'boss' \
                     AND subject = 'staff clerk' AND details = '{\"reason\":\"left the bureau\",\"tokens_revoked\":1}'"
                )
                .await,
            1
        );

        assert_eq!(
            database
                .number("SELECT COUNT(*) FROM staff_tokens WHERE name = 'clerk' AND revoked_at IS NULL")
                .await,
            0
        );

        // Enabled again: the password works, the ended session stays ended
        // and the revoked token stays revoked; a new token works.
        store.enable_staff("clerk", "boss").await.unwrap();
        assert!(store.staff_for_token(&token).await.unwrap().is_none());
        let new_token = store.add_staff("clerk", &[Role::Reviewer], "boss").await.unwrap();
        assert_eq!(
            store
                .staff_for_token(&new_token)
                .await
                .unwrap()
                .map(|user| user.name),
            Some("clerk".to_owned())
        );
        assert!(store
            .staff_login("clerk", "a long password")
            .await
            .unwrap()
            .is_some());
        assert!(store.session(&session.token).await.unwrap().is_none());
        let clerk = store.staff_member("clerk").await.unwrap().unwrap();
        assert_eq!(
            (clerk.disabled_at, clerk.disabled_by, clerk.disabled_reason),
            (None, None, None)
        );
        assert_eq!(
            database
                .number(
                    "SELECT COUNT(*) FROM audit_log WHERE action = 'staff.enable' AND actor = 'boss' \
                     AND subject = 'staff clerk'"
                )
                .await,
            1
        );
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}

#[tokio::test]
async fn no_one_disables_themselves_nor_the_last_enabled_admin_and_a_refusal_changes_nothing() {
    for database in fresh_databases("console_staff_guards").await {
        let store = with_policy(&database).await;
        store.add_staff("boss", &[Role::Admin], "setup").await.unwrap();
        store.add_staff("clerk", &[Role::Reviewer], "boss").await.unwrap();
        let before = database.dump().await;
        let refusals = [
            store.disable_staff("boss", "tired", "boss").await.unwrap_err(),
            store
                .set_staff_roles("boss", &[Role::Reviewer], "boss")
                .await
                .unwrap_err(),
            // By anyone else too: boss is the last enabled admin.
            store.disable_staff("boss", "tired", "clerk").await.unwrap_err(),
            store
                .set_staff_roles("boss", &[Role::Auditor], "clerk")
                .await
                .unwrap_err(),
            store.set_staff_roles("clerk", &[], "boss").await.unwrap_err(),
            store.disable_staff("clerk", "  ", "boss").await.unwrap_err(),
            store.disable_staff("nobody", "gone", "boss").await.unwrap_err(),
            store.enable_staff("clerk", "boss").await.unwrap_err(),
        ];
        let keys: Vec<&str> = refusals.iter().map(StaffError::key).collect();
        assert_eq!(
            keys,
            [
                "self_disable",
                "self_admin_removal",
                "last_admin",
                "last_admin",
                "no_role",
                "reason_required",
                "not_found",
                "not_disabled"
            ]
        );
        // Adding the name again with other roles is a change of roles:
        // refused for the last admin too.
        let added = store.add_staff("boss", &[Role::Reviewer], "clerk").await;
        assert!(
            matches!(&added, Err(ApplicationError::Refused(message)) if message.contains("last enabled admin")),
            "{added:?}"
        );
        assert_eq!(database.dump().await, before);

        // With a second admin, one may disable the other; a disabled
        // admin does not count, so the one left is the last again.
        store
            .add_staff("deputy", &[Role::Admin, Role::Auditor], "boss")
            .await
            .unwrap();
        store.disable_staff("boss", "on leave", "deputy").await.unwrap();
        assert_eq!(
            store
                .disable_staff("boss", "again", "deputy")
                .await
                .unwrap_err()
                .key(),
            "already_disabled"
        );
        assert_eq!(
            store
                .set_staff_roles("deputy", &[Role::Auditor], "clerk")
                .await
                .unwrap_err()
                .key(),
            "last_admin"
        );
        assert_eq!(
            store
                .disable_staff("deputy", "gone", "clerk")
                .await
                .unwrap_err()
                .key(),
            "last_admin"
        );
        // A disabled admin's roles may change: they guard nothing.
        assert!(store
            .set_staff_roles("boss", &[Role::Reviewer], "deputy")
            .await
            .unwrap());
        store.enable_staff("boss", "deputy").await.unwrap();
        assert_eq!(
            store.staff("boss").await.unwrap().unwrap().roles,
            vec![Role::Reviewer]
        );
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}
