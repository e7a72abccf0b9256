//! The sessions of the web pages as the pages read them, on both backends:
//! a citizen's page of bills, read at once, is the same as its parts, holds
//! only their own bills, and is the same on both; a session ended, expired,
//! of the other kind or of a disabled member of staff opens nothing.
//!
//! A citizen's session opened for a person the city's unified login
//! vouched for: only for a person the store knows, the same session as the
//! code login's, audited with its channel.

use jiuzhu_core::{InvoiceNo, ResidentId};
use jiuzhu_store::{CitizenBill, CodeRequest, LoginChannel, Role, StaffUser, Store};

use super::{fresh_databases, prepared, settle_all};

/// Logs `person` in with the phone `phone` set for them; the session's
/// token and CSRF token.
async fn citizen_login(store: &Store, person: &str, phone: &str) -> (String, String) {
    let person = ResidentId::parse(person).unwrap();
    store.set_phone(person, phone, "admin").await.unwrap();
    let CodeRequest::Made { code, .. } = store.request_login_code(person, phone).await.unwrap() else {
        panic!("no code for {person}");
    };
    let session = store.finish_login(person, &code, 3600).await.unwrap().unwrap();
    (session.token, session.csrf)
}

#[tokio::test]
async fn a_citizens_page_of_bills_is_their_own_read_at_once_and_the_same_on_both_backends() {
    let mut pages: Vec<Vec<CitizenBill>> = Vec::new();
    for database in fresh_databases("citizen_page").await {
        let (store, _) = prepared(&database).await;
        settle_all(&store).await;
        store
            .reverse("H001", &InvoiceNo::parse("INV002").unwrap(), "H001")
            .await
            .unwrap();
        let (token, csrf) = citizen_login(&store, "110105196001010017", "13800138000").await;
        let (other, _) = citizen_login(&store, "110105196001010041", "13800138001").await;

        let page = store.citizen_bills_page(&token).await.unwrap().unwrap();
        assert_eq!(page.session.csrf, csrf);
        assert_eq!(page.masked, "110105********0017");
        // The same as the session and the bills read one by one.
        let (session, key, masked) = store.citizen_session(&token).await.unwrap().unwrap();
        assert_eq!(
            (&page.session, &page.key, &page.masked),
            (&session, &key, &masked)
        );
        assert_eq!(page.bills, store.citizen_bills(&key).await.unwrap());
        // Their bills only, newest service date first, the reversal shown,
        // each with its decision's stored answer.
        let shown: Vec<(&str, &str, &str, bool)> = page
            .bills
            .iter()
            .map(|bill| {
                (
                    bill.invoice_no.as_str(),
                    bill.service_date.as_str(),
                    bill.hospital.as_str(),
                    bill.reversed,
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                ("INV002", "2024-04-01", "H001", true),
                ("INV001", "2024-03-01", "H001", false),
                ("INV007", "2023-12-20", "H001", false),
            ]
        );
        for bill in &page.bills {
            let answer: serde_json::Value = serde_json::from_str(&bill.response).unwrap();
            assert_eq!(answer["invoice_no"], bill.invoice_no.as_str());
            assert_eq!(answer["outcome"], bill.outcome.as_str());
        }
        let theirs = store.citizen_bills_page(&other).await.unwrap().unwrap();
        assert_eq!(theirs.masked, "110105********0041");
        assert!(theirs
            .bills
            .iter()
            .all(|bill| !page.bills.iter().any(|mine| mine.invoice_no == bill.invoice_no)));

        // A staff session opens no citizen's page, a citizen's session no
        // staff page; a disabled member of staff's session opens nothing.
        store
            .add_staff("clerk", &[Role::Reviewer], "admin")
            .await
            .unwrap();
        let staff = store.open_session("clerk", 3600).await.unwrap();
        let (staff_session, user) = store.session(&staff.token).await.unwrap().unwrap();
        assert_eq!(
            (staff_session.subject.as_str(), staff_session.csrf.as_str()),
            ("clerk", staff.csrf.as_str())
        );
        assert_eq!(
            user,
            StaffUser {
                name: "clerk".into(),
                roles: vec![Role::Reviewer]
            }
        );
        assert_eq!(store.citizen_bills_page(&staff.token).await.unwrap(), None);
        assert_eq!(store.citizen_session(&staff.token).await.unwrap(), None);
        assert_eq!(store.session(&token).await.unwrap(), None);
        database
            .execute("UPDATE staff_users SET disabled_at = '2026-01-01T00:00:00Z' WHERE name = 'clerk'")
            .await;
        assert_eq!(store.session(&staff.token).await.unwrap(), None);

        // An unknown token, an ended session and an expired one open
        // nothing.
        assert_eq!(store.citizen_bills_page("no such token").await.unwrap(), None);
        store.end_session(&token).await.unwrap();
        assert_eq!(store.citizen_bills_page(&token).await.unwrap(), None);
        assert_eq!(store.citizen_session(&token).await.unwrap(), None);
        assert!(store.citizen_bills_page(&other).await.unwrap().is_some());
        database
            .execute("UPDATE web_sessions SET expires_unix = 0 WHERE kind = 'citizen'")
            .await;
        assert_eq!(store.citizen_bills_page(&other).await.unwrap(), None);
        pages.push(page.bills);
        database.drop_database().await;
    }
    assert!(pages.windows(2).all(|pair| pair[0] == pair[1]), "{pages:#?}");
}

#[tokio::test]
async fn a_session_by_the_unified_login_opens_only_for_a_known_person_and_is_audited_with_its_channel() {
    for database in fresh_databases("oidc_session").await {
        let (store, _) = prepared(&database).await;
        let known = ResidentId::parse("110105196001010017").unwrap();
        let unknown = "0123456789X"
            .chars()
            .find_map(|last| ResidentId::parse(&format!("11010519700101001{last}")).ok())
            .unwrap();
        let entries = store.verify_audit().await.unwrap().unwrap().entries;
        let sessions = database.number("SELECT COUNT(*) FROM web_sessions").await;

        // Unknown: nothing stored.
        assert_eq!(
            store
                .open_citizen_session(unknown, LoginChannel::Oidc, 3600)
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.verify_audit().await.unwrap().unwrap().entries, entries);
        assert_eq!(
            database.number("SELECT COUNT(*) FROM web_sessions").await,
            sessions
        );

        // Known: the citizen's session, as the code login opens it.
        let session = store
            .open_citizen_session(known, LoginChannel::Oidc, 3600)
            .await
            .unwrap()
            .unwrap();
        let (opened, _, masked) = store.citizen_session(&session.token).await.unwrap().unwrap();
        assert_eq!(opened.csrf, session.csrf);
        assert_eq!(masked, known.masked());
        assert!(
            store.session(&session.token).await.unwrap().is_none(),
            "a staff session"
        );
        assert_eq!(store.verify_audit().await.unwrap().unwrap().entries, entries + 1);
        assert_eq!(
            database
                .number(
                    "SELECT COUNT(*) FROM audit_log WHERE action = 'citizen.login' \
                     AND details = '{\"channel\":\"oidc\"}'"
                )
                .await,
            1
        );
        // Ended, it opens nothing.
        store.end_session(&session.token).await.unwrap();
        assert!(store.citizen_session(&session.token).await.unwrap().is_none());
        database.drop_database().await;
    }
}
