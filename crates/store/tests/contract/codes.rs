//! One-time codes through the outbox, on both backends: a code made (a
//! login's, a change of details') is exactly one notification to the
//! phone on record, holding the code; none when the ID and phone do not
//! match or the rate limit refuses; its message sealed at rest and blanked
//! once sent; never sent twice; never sent once its code has expired or a
//! newer code replaced it; and
//! a dispatch of codes only sends them ahead of a backlog.

use jiuzhu_core::ResidentId;
use jiuzhu_store::{CodeRequest, DispatchOptions, NotificationKind, Store};

use super::{fresh_databases, prepared, Fresh, Recorder};

const PERSON: &str = "110105196001010017";
const PHONE: &str = "13800138000";

/// The code rows of the outbox: kind, sealed message, sent, expired.
type CodeRow = (String, Option<Vec<u8>>, Option<String>, Option<String>);

async fn code_rows(database: &Fresh) -> Vec<CodeRow> {
    const SQL: &str =
        "SELECT kind, sealed, sent_at, expired_at FROM outbox WHERE code_id IS NOT NULL ORDER BY id";
    match database {
        Fresh::Sqlite { url, .. } => {
            use sqlx::Connection as _;
            let mut connection = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_as(SQL).fetch_all(&mut connection).await.unwrap()
        }
        Fresh::Postgres { url, .. } => {
            use sqlx::Connection as _;
            let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_as(SQL).fetch_all(&mut connection).await.unwrap()
        }
    }
}

/// A store with the small fixture's spells, the person's phone on record
/// and the import's own notifications sent (so that only codes are left).
async fn with_phone(database: &Fresh) -> Store {
    let (store, _) = prepared(database).await;
    store
        .set_phone(ResidentId::parse(PERSON).unwrap(), PHONE, "clerk")
        .await
        .unwrap();
    store
        .dispatch_notifications(&Recorder::default(), 1000)
        .await
        .unwrap();
    store
}

fn made(request: CodeRequest) -> String {
    match request {
        CodeRequest::Made { code, .. } => code,
        other => panic!("no code made: {other:?}"),
    }
}

#[tokio::test]
async fn a_code_is_one_sealed_notification_to_the_phone_on_record_sent_once_and_then_blanked() {
    for database in fresh_databases("codes_sent").await {
        let store = with_phone(&database).await;
        let person = ResidentId::parse(PERSON).unwrap();
        // Not the phone on record, or not a phone: nothing made, nothing sent.
        for phone in ["13900139000", "12345"] {
            assert_eq!(
                store.request_login_code(person, phone).await.unwrap(),
                CodeRequest::NoMatch
            );
        }
        // A person of the store with no phone on record.
        let stranger = ResidentId::parse("110105196001010025").unwrap();
        assert_eq!(
            store.request_login_code(stranger, PHONE).await.unwrap(),
            CodeRequest::NoMatch
        );
        assert!(code_rows(&database).await.is_empty());

        let code = made(store.request_login_code(person, PHONE).await.unwrap());
        let rows = code_rows(&database).await;
        assert_eq!(rows.len(), 1);
        let (kind, sealed, sent, expired) = &rows[0];
        assert_eq!((kind.as_str(), sent, expired), ("login_code", &None, &None));
        // At rest the code and the phone are sealed, not in clear.
        let sealed = sealed
            .as_ref()
            .expect("a code's message is kept sealed until it is sent");
        for secret in [code.as_bytes(), PHONE.as_bytes()] {
            assert!(!sealed.windows(secret.len()).any(|window| window == secret));
        }
        assert_eq!(
            database
                .number("SELECT COUNT(*) FROM outbox WHERE code_id IS NOT NULL AND (text IS NOT NULL OR facts IS NOT NULL)")
                .await,
            0
        );

        let phone = Recorder::default();
        let report = store.dispatch_notifications(&phone, 100).await.unwrap();
        assert_eq!((report.sent, report.pending), (1, 0));
        let taken = phone.taken.lock().unwrap().clone();
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].kind, NotificationKind::LoginCode);
        assert_eq!(taken[0].phone.as_deref(), Some(PHONE));
        assert_eq!(taken[0].person, person.masked());
        assert!(
            taken[0].text.contains(&format!("验证码 {code}")),
            "{}",
            taken[0].text
        );
        // Sent: the sealed message is gone, and nothing is sent again.
        let rows = code_rows(&database).await;
        assert!(rows[0].1.is_none() && rows[0].2.is_some(), "{rows:?}");
        let again = store.dispatch_notifications(&phone, 100).await.unwrap();
        assert_eq!(again.taken(), 0);
        assert_eq!(phone.ids().len(), 1);

        // The details' code of the resident logged in: to the same phone.
        let session = store.finish_login(person, &code, 3600).await.unwrap().unwrap();
        let (_, key, _) = store.citizen_session(&session.token).await.unwrap().unwrap();
        let details = made(store.request_code_by_key(&key).await.unwrap());
        store.dispatch_notifications(&phone, 100).await.unwrap();
        let taken = phone.taken.lock().unwrap().clone();
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[1].kind, NotificationKind::DetailsCode);
        assert_eq!(taken[1].phone.as_deref(), Some(PHONE));
        assert!(
            taken[1].text.contains(&format!("验证码 {details}")),
            "{}",
            taken[1].text
        );

        // The rate limit counts before anything is written: five codes in
        // the window (two made), then refused, and no notification more.
        let mut answers = Vec::new();
        for _ in 0..5 {
            answers.push(matches!(
                store.request_login_code(person, PHONE).await.unwrap(),
                CodeRequest::Made { .. }
            ));
        }
        assert_eq!(answers, [true, true, true, false, false]);
        assert_eq!(code_rows(&database).await.len(), 5);
    }
}

#[tokio::test]
async fn a_code_not_sent_before_it_expires_is_never_sent_and_a_failed_one_is_retried_sealed() {
    for database in fresh_databases("codes_expire").await {
        let store = with_phone(&database).await;
        let person = ResidentId::parse(PERSON).unwrap();
        made(store.request_login_code(person, PHONE).await.unwrap());
        // The gateway fails: kept, still sealed, tried again after its wait.
        let failing = Recorder::failing(1);
        let report = store.dispatch_notifications(&failing, 100).await.unwrap();
        assert_eq!((report.failed, report.pending), (1, 1));
        assert!(code_rows(&database).await[0].1.is_some());
        database
            .execute("UPDATE outbox SET next_attempt_unix_ms = 0")
            .await;
        let report = store.dispatch_notifications(&failing, 100).await.unwrap();
        assert_eq!(report.sent, 1);
        assert!(code_rows(&database).await[0].1.is_none());

        // A second code, failing until its code has expired: given up.
        made(store.request_login_code(person, PHONE).await.unwrap());
        let failing = Recorder::failing(1);
        store.dispatch_notifications(&failing, 100).await.unwrap();
        database
            .execute(
                "UPDATE outbox SET next_attempt_unix_ms = 0, expires_unix_ms = 1 \
                 WHERE code_id IS NOT NULL AND sent_at IS NULL",
            )
            .await;
        let late = Recorder::default();
        let report = store.dispatch_notifications(&late, 100).await.unwrap();
        assert_eq!((report.sent, report.failed, report.pending), (0, 0, 0));
        assert!(late.ids().is_empty());
        let rows = code_rows(&database).await;
        let (_, sealed, sent, expired) = &rows[1];
        assert!(
            sealed.is_none() && sent.is_none() && expired.is_some(),
            "{rows:?}"
        );
    }
}

#[tokio::test]
async fn a_code_replaced_by_a_newer_one_before_it_was_sent_is_never_sent() {
    for database in fresh_databases("codes_replaced").await {
        let store = with_phone(&database).await;
        let person = ResidentId::parse(PERSON).unwrap();
        let older = made(store.request_login_code(person, PHONE).await.unwrap());
        let newer = made(store.request_login_code(person, PHONE).await.unwrap());
        // Only the newest code opens a session, so only it is sent.
        let rows = code_rows(&database).await;
        assert_eq!(rows.len(), 2);
        let (_, sealed, sent, expired) = &rows[0];
        assert!(
            sealed.is_none() && sent.is_none() && expired.is_some(),
            "{rows:?}"
        );
        assert!(rows[1].1.is_some() && rows[1].3.is_none(), "{rows:?}");
        let phone = Recorder::default();
        let report = store.dispatch_notifications(&phone, 100).await.unwrap();
        assert_eq!((report.sent, report.pending), (1, 0));
        let taken = phone.taken.lock().unwrap().clone();
        assert_eq!(taken.len(), 1);
        assert!(
            taken[0].text.contains(&format!("验证码 {newer}")),
            "{}",
            taken[0].text
        );
        if older != newer {
            assert!(!taken[0].text.contains(&older), "{}", taken[0].text);
        }
        // A code sent already is left as it is by a newer one.
        made(store.request_login_code(person, PHONE).await.unwrap());
        let rows = code_rows(&database).await;
        assert!(rows[1].2.is_some() && rows[1].3.is_none(), "{rows:?}");
        assert!(rows[2].1.is_some() && rows[2].3.is_none(), "{rows:?}");
    }
}

#[tokio::test]
async fn a_dispatch_of_codes_sends_them_ahead_of_the_notifications_waiting() {
    for database in fresh_databases("codes_first").await {
        // The import's new-recipient notifications wait, unsent.
        let (store, _) = prepared(&database).await;
        let person = ResidentId::parse(PERSON).unwrap();
        store.set_phone(person, PHONE, "clerk").await.unwrap();
        let waiting = database
            .number("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
            .await;
        assert!(waiting > 0);
        made(store.request_login_code(person, PHONE).await.unwrap());
        let phone = Recorder::default();
        let codes_only = DispatchOptions {
            limit: 1,
            codes_only: true,
            ..DispatchOptions::default()
        };
        let report = store
            .dispatch_notifications_with(&phone, codes_only)
            .await
            .unwrap();
        assert_eq!(report.sent, 1);
        assert_eq!(report.pending, u64::try_from(waiting).unwrap());
        assert_eq!(phone.taken.lock().unwrap()[0].kind, NotificationKind::LoginCode);
        // Nothing else is a code.
        let report = store
            .dispatch_notifications_with(&phone, codes_only)
            .await
            .unwrap();
        assert_eq!(report.taken(), 0);
    }
}
