//! A citizen's session opened for a person the city's unified login
//! vouched for, on both backends: only for a person the store knows, the
//! same session as the code login's, audited with its channel.

use jiuzhu_core::ResidentId;
use jiuzhu_store::LoginChannel;

use super::{fresh_databases, prepared};

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
