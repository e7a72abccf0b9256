//! Applications (救助申请), smart acceptance (智能受理) and review (救助审核),
//! on both backends.

use jiuzhu_core::{Batch, Date, Fen, Outcome, SpellBook};
use jiuzhu_formats::application::{parse_application_request, ApplicationLimits, ApplicationRequest};
use jiuzhu_formats::{parse_policy, read_batch_invoices, read_spells};
use jiuzhu_store::{
    AcceptanceSettings, ApplicationError, ApplicationState, ApplyChannel, Role, Store, Verdict,
};

use super::{fresh_databases, import_feed, prepared, read, Fresh, ACCOUNTS, INVOICES, POLICY, SPELLS};

const PERSON: &str = "110105196001010017";
const LETTER: &str = "本人承诺所提交的票据真实有效，未在其他渠道重复报销。";

fn settings() -> AcceptanceSettings {
    AcceptanceSettings {
        filing_deadline_days: 365,
        today: Some(Date::parse("2024-06-01").unwrap()),
    }
}

/// A bill of an application as JSON: number, hospital, visit type,
/// service date, and total, fund paid, in-scope and out-of-scope self-pay.
fn bill(number: &str, hospital: &str, visit: &str, date: &str, amounts: [&str; 4]) -> String {
    format!(
        r#"{{"invoice_no":"{number}","hospital":"{hospital}","visit_type":"{visit}","service_date":"{date}",
        "settled_at":"{date}T16:00:00+08:00","total":"{}","fund_paid":"{}","in_scope_self_pay":"{}",
        "out_of_scope_self_pay":"{}"}}"#,
        amounts[0], amounts[1], amounts[2], amounts[3]
    )
}

fn request(person: &str, bills: &[String]) -> ApplicationRequest {
    let body = format!(r#"{{"person_id":"{person}","bills":[{}]}}"#, bills.join(","));
    parse_application_request(body.as_bytes(), ApplicationLimits::default()).unwrap()
}

/// Staff: a counter clerk who also reviews, a reviewer, and an auditor.
async fn staff(store: &Store) {
    store
        .add_staff("clerk", &[Role::Reviewer], "admin")
        .await
        .unwrap();
    store
        .add_staff("reviewer", &[Role::Reviewer], "admin")
        .await
        .unwrap();
    store
        .add_staff("auditor", &[Role::Auditor], "admin")
        .await
        .unwrap();
}

async fn signed(store: &Store, person: &str) {
    let letter = store.current_letter().await.unwrap().unwrap();
    let person = jiuzhu_core::ResidentId::parse(person).unwrap();
    store
        .sign_letter(person, &letter.sha256, ApplyChannel::Counter, "clerk")
        .await
        .unwrap();
}

/// What `jiuzhu simulate` grants for the small fixture's spells and these
/// bills (CSV rows without header).
fn simulated(rows: &str) -> Vec<(String, Outcome, Fen)> {
    let policy = parse_policy(POLICY, &read(POLICY)).unwrap();
    let known: Vec<String> = policy
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let text = format!(
        "invoice_no,person_id,hospital,visit_type,service_date,settled_at,total,fund_paid,in_scope_self_pay,\
         out_of_scope_self_pay\n{rows}"
    );
    let batch = Batch::new(
        read_batch_invoices("bills.csv", text.as_bytes(), &known).unwrap(),
        known,
    );
    let spells = read_spells(SPELLS, read(SPELLS).as_bytes(), Some(&policy)).unwrap();
    let run = batch
        .run(&policy, &SpellBook::new(&policy, &spells).unwrap(), &|_| {})
        .unwrap();
    batch
        .invoices()
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let decision = run.decision(index);
            (record.invoice_no.to_string(), decision.outcome, decision.amount)
        })
        .collect()
}

#[tokio::test]
async fn an_application_is_possible_only_after_signing_the_current_letter_and_a_refusal_changes_nothing() {
    for database in fresh_databases("apply_letter").await {
        let (store, _) = prepared(&database).await;
        let application = request(
            PERSON,
            &[bill(
                "OUT001",
                "外市医院",
                "inpatient",
                "2024-03-10",
                ["100", "70", "25", "5"],
            )],
        );
        let submit = || store.submit_application(&application, ApplyChannel::Counter, "clerk", settings());

        let before = database.dump().await;
        assert!(matches!(submit().await, Err(ApplicationError::NoLetter)));
        assert_eq!(database.dump().await, before);

        let first = store.publish_letter("2024-01", LETTER, "admin").await.unwrap();
        assert_eq!(first.sha256.len(), 64);
        let before = database.dump().await;
        let refused = submit().await;
        assert!(
            matches!(&refused, Err(ApplicationError::NotSigned { version }) if version == "2024-01"),
            "{refused:?}"
        );
        assert_eq!(database.dump().await, before);

        // Signed, then a new version is published: the old signature no
        // longer lets the person apply.
        signed(&store, PERSON).await;
        let second = store
            .publish_letter("2024-07", &format!("{LETTER}（修订）"), "admin")
            .await
            .unwrap();
        assert!(matches!(submit().await, Err(ApplicationError::NotSigned { .. })));
        let person = jiuzhu_core::ResidentId::parse(PERSON).unwrap();
        let stale = store
            .sign_letter(person, &first.sha256, ApplyChannel::Web, "citizen")
            .await;
        assert!(
            matches!(&stale, Err(ApplicationError::LetterChanged { current, .. }) if current == "2024-07"),
            "{stale:?}"
        );
        let signature = store
            .sign_letter(
                person,
                &second.sha256.to_uppercase(),
                ApplyChannel::Web,
                "citizen",
            )
            .await
            .unwrap();
        assert_eq!(
            (signature.letter_version.as_str(), signature.channel.as_str()),
            ("2024-07", "web")
        );
        assert_eq!(signature.sha256, second.sha256);
        // The same text or version cannot be published twice.
        assert!(matches!(
            store.publish_letter("2024-08", LETTER, "admin").await,
            Err(ApplicationError::Invalid(_))
        ));

        // A person the store does not know cannot sign.
        let stranger = jiuzhu_core::ResidentId::parse("11010519491231002X").unwrap();
        assert!(matches!(
            store
                .sign_letter(stranger, &second.sha256, ApplyChannel::Web, "citizen")
                .await,
            Err(ApplicationError::UnknownPerson)
        ));
        let view = submit().await.unwrap();
        assert_eq!(view.summary.state, ApplicationState::Decided);
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}

#[tokio::test]
async fn a_clean_application_is_accepted_decided_as_simulate_decides_and_paid_through_a_batch() {
    for database in fresh_databases("apply_clean").await {
        let (store, _) = prepared(&database).await;
        super::disbursement_staff(&store).await;
        store.publish_letter("2024-01", LETTER, "admin").await.unwrap();
        signed(&store, PERSON).await;
        let png = jiuzhu_store::scan_base64(b"\x89PNG\r\n\x1a\n-a-scan-");
        let with_scan = bill(
            "OUT001",
            "外市医院",
            "inpatient",
            "2024-03-10",
            ["10000", "7000", "2500", "500"],
        )
        .replace(
            '}',
            &format!(r#","scan":{{"media_type":"image/png","content_base64":"{png}"}}}}"#),
        );
        let application = request(
            PERSON,
            &[
                with_scan,
                bill(
                    "OUT002",
                    "外市医院",
                    "outpatient",
                    "2024-04-02",
                    ["800", "200", "600", "0"],
                ),
            ],
        );
        let view = store
            .submit_application(&application, ApplyChannel::Counter, "clerk", settings())
            .await
            .unwrap();
        assert_eq!(view.summary.state, ApplicationState::Decided);
        assert_eq!(view.findings().count(), 0, "{:?}", view.checks);
        // Every check of every bill is stored, passed.
        assert_eq!(view.checks.len(), 2 * 7);
        let states: Vec<&str> = view.events.iter().map(|event| event.state.as_str()).collect();
        assert_eq!(states, ["submitted", "accepted", "decided"]);
        assert_eq!(view.events[0].actor, "clerk");

        // Decided by the engine exactly as simulate decides the same bills.
        let expected = simulated(&format!(
            "OUT001,{PERSON},外市医院,inpatient,2024-03-10,2024-03-10T16:00:00+08:00,10000,7000,2500,500\n\
             OUT002,{PERSON},外市医院,outpatient,2024-04-02,2024-04-02T16:00:00+08:00,800,200,600,0\n"
        ));
        for (number, outcome, amount) in &expected {
            let bill = view.bills.iter().find(|bill| &bill.invoice_no == number).unwrap();
            assert_eq!(bill.status, "decided");
            assert_eq!(
                bill.decision,
                Some((outcome.as_str().to_owned(), *amount)),
                "{number}"
            );
        }
        assert!(expected.iter().any(|(_, _, amount)| amount.fen() > 0));
        let scan = view.bills[0].scan.clone().unwrap();
        assert_eq!((scan.0.as_str(), scan.1), ("image/png", 16));
        let (media_type, bytes) = store.application_scan(view.summary.id, 1).await.unwrap().unwrap();
        assert_eq!(
            (media_type.as_str(), bytes.as_slice()),
            ("image/png", &b"\x89PNG\r\n\x1a\n-a-scan-"[..])
        );

        // The same application again: every bill is already decided and
        // applied for, so it goes to a reviewer and decides nothing.
        let again = store
            .submit_application(&application, ApplyChannel::Counter, "clerk", settings())
            .await
            .unwrap();
        assert_eq!(again.summary.state, ApplicationState::NeedsReview);
        assert!(again.bills.iter().all(|bill| bill.status == "excluded"));
        let failed: Vec<(u32, &str)> = again
            .findings()
            .map(|check| (check.line, check.name.as_str()))
            .collect();
        assert!(
            failed.contains(&(1, "not_decided")) && failed.contains(&(2, "not_applied")),
            "{failed:?}"
        );

        // Paid through a batch: the application becomes paid.
        let account: String = ACCOUNTS.lines().take(2).map(|line| format!("{line}\n")).collect();
        let rows = jiuzhu_formats::bank::read_bank_accounts("accounts.csv", account.as_bytes()).unwrap();
        store
            .load_bank_accounts("accounts.csv", &rows, "clerk")
            .await
            .unwrap();
        let batch = store.create_batch("maker").await.unwrap().batch.unwrap();
        let granted: i64 = expected.iter().map(|(_, _, amount)| amount.fen()).sum();
        assert_eq!(batch.total, Fen::from_fen(granted));
        store.approve_batch(batch.id, "checker").await.unwrap();
        let lines = store.export_batch(batch.id, "checker").await.unwrap();
        let text = format!("line_id,status,reason\n{},paid,\n", lines[0].line_id);
        let rows = jiuzhu_formats::bank::read_bank_return("return.csv", text.as_bytes()).unwrap();
        store
            .import_bank_return(batch.id, "return.csv", &rows, "clerk")
            .await
            .unwrap();
        let paid = store.read_application(view.summary.id).await.unwrap();
        assert_eq!(paid.summary.state, ApplicationState::Paid);
        assert_eq!(paid.events.last().unwrap().state, "paid");

        // The person's story tells all of it, in order, masked.
        let story = store
            .person_story(jiuzhu_core::ResidentId::parse(PERSON).unwrap(), "auditor", "test")
            .await
            .unwrap()
            .unwrap();
        let told: Vec<(&str, &str)> = story
            .events
            .iter()
            .filter(|event| !matches!(event.kind.as_str(), "spell" | "decision"))
            .map(|event| (event.kind.as_str(), event.summary.as_str()))
            .collect();
        let kinds: Vec<&str> = told.iter().map(|(kind, _)| *kind).collect();
        assert_eq!(
            kinds,
            [
                "signature",
                "application",
                "application",
                "application",
                "application",
                "application",
                "bank_account",
                "payment",
                "application",
                "payment"
            ],
            "{told:#?}"
        );
        assert!(told[0]
            .1
            .starts_with("commitment letter 2024-01 signed via counter"));
        assert!(told
            .iter()
            .any(|(_, summary)| summary.contains("bank account 农业银行 6228********5678")));
        assert!(
            told.iter()
                .any(|(_, summary)| summary.ends_with("paid by the bank")),
            "{told:#?}"
        );
        let text = format!("{story:?}");
        assert!(!text.contains(PERSON) && !text.contains("6228480012345678"));
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}

#[tokio::test]
async fn each_finding_is_named_on_its_bill_and_a_reviewer_other_than_the_clerk_decides() {
    for database in fresh_databases("apply_review").await {
        let (store, _) = prepared(&database).await;
        import_feed(&store, &read(INVOICES), 1024).await.unwrap();
        staff(&store).await;
        store.publish_letter("2024-01", LETTER, "admin").await.unwrap();
        signed(&store, PERSON).await;
        let application = request(
            PERSON,
            &[
                // 1: decided already in the feed.
                bill(
                    "INV001",
                    "H001",
                    "inpatient",
                    "2024-03-01",
                    ["10000", "7000", "2500", "500"],
                ),
                // 2: the same hospital, day and total as INV001.
                bill(
                    "OUT002",
                    "H001",
                    "inpatient",
                    "2024-03-01",
                    ["10000", "7000", "2500", "500"],
                ),
                // 3: amounts that do not add up.
                bill(
                    "OUT003",
                    "外市医院",
                    "inpatient",
                    "2024-04-01",
                    ["100", "70", "25", "6"],
                ),
                // 4: before the person's category, and past the deadline.
                bill(
                    "OUT004",
                    "外市医院",
                    "inpatient",
                    "2022-12-01",
                    ["100", "70", "25", "5"],
                ),
                // 5: the number of line 2 again.
                bill(
                    "OUT002",
                    "外市医院",
                    "inpatient",
                    "2024-04-05",
                    ["100", "70", "25", "5"],
                ),
                // 6: a visit type the policy does not know.
                bill(
                    "OUT006",
                    "外市医院",
                    "spa",
                    "2024-04-06",
                    ["100", "70", "25", "5"],
                ),
            ],
        );
        let view = store
            .submit_application(&application, ApplyChannel::Counter, "clerk", settings())
            .await
            .unwrap();
        assert_eq!(view.summary.state, ApplicationState::NeedsReview);
        let failed: Vec<(u32, &str)> = view
            .findings()
            .map(|check| (check.line, check.name.as_str()))
            .collect();
        assert_eq!(
            failed,
            [
                (1, "not_decided"),
                (2, "no_suspected_duplicate"),
                (3, "amounts_add_up"),
                (4, "eligible"),
                (4, "within_deadline"),
                (5, "not_applied"),
                (6, "visit_type_known"),
            ]
        );
        let finding = |line: u32, name: &str| {
            view.checks
                .iter()
                .find(|check| check.line == line && check.name == name)
                .unwrap()
                .detail
                .clone()
        };
        assert!(finding(1, "not_decided").contains("insurance feed"));
        assert!(finding(2, "no_suspected_duplicate").contains("INV001"));
        assert!(finding(3, "amounts_add_up").contains("= 101.00, but total is 100.00"));
        assert!(finding(4, "within_deadline").contains("548 days"));
        assert!(finding(5, "not_applied").contains("line 2"));
        let statuses: Vec<&str> = view.bills.iter().map(|bill| bill.status.as_str()).collect();
        assert_eq!(
            statuses,
            ["excluded", "pending", "excluded", "pending", "excluded", "excluded"]
        );

        // The queue, by role.
        assert!(matches!(
            store.review_queue("auditor").await,
            Err(ApplicationError::MissingRole { .. })
        ));
        assert!(matches!(
            store.review_queue("stranger").await,
            Err(ApplicationError::NotStaff(_))
        ));
        let queue = store.review_queue("reviewer").await.unwrap();
        assert_eq!(
            queue.iter().map(|item| item.id).collect::<Vec<_>>(),
            [view.summary.id]
        );
        assert_eq!(queue[0].findings, 7);

        // Refusals change nothing.
        let id = view.summary.id;
        let before = database.dump().await;
        for (actor, reason, expected) in [
            ("clerk", "ok", "SelfReview"),
            ("auditor", "ok", "MissingRole"),
            ("stranger", "ok", "NotStaff"),
            ("reviewer", "  ", "ReasonRequired"),
        ] {
            let refused = store
                .review_application(id, Verdict::Approve, reason, actor)
                .await;
            assert!(format!("{refused:?}").contains(expected), "{actor}: {refused:?}");
        }
        assert_eq!(database.dump().await, before);

        // Approved: the pending bills are decided, the excluded are not.
        let approved = store
            .review_application(id, Verdict::Approve, "票据已核对，重复嫌疑排除", "reviewer")
            .await
            .unwrap();
        assert_eq!(approved.summary.state, ApplicationState::Decided);
        let states: Vec<(&str, &str)> = approved
            .events
            .iter()
            .map(|event| (event.state.as_str(), event.actor.as_str()))
            .collect();
        assert_eq!(
            states,
            [
                ("submitted", "clerk"),
                ("needs_review", "smart-acceptance"),
                ("approved", "reviewer"),
                ("decided", "reviewer")
            ]
        );
        let decided: Vec<(&str, Option<&str>)> = approved
            .bills
            .iter()
            .map(|bill| {
                (
                    bill.status.as_str(),
                    bill.decision.as_ref().map(|(outcome, _)| outcome.as_str()),
                )
            })
            .collect();
        assert_eq!(decided[1], ("decided", Some("assisted")));
        assert_eq!(decided[3], ("decided", Some("not_eligible")));
        assert_eq!(decided[0], ("excluded", None));
        assert!(matches!(
            store
                .review_application(id, Verdict::Reject, "again", "reviewer")
                .await,
            Err(ApplicationError::NotInReview { .. })
        ));
        assert!(store.review_queue("reviewer").await.unwrap().is_empty());

        // An application whose every bill is excluded cannot be approved;
        // rejected, its numbers are free for a later application.
        let blocked = store
            .submit_application(
                &request(
                    PERSON,
                    &[bill(
                        "OUT009",
                        "外市医院",
                        "spa",
                        "2024-05-01",
                        ["100", "70", "25", "5"],
                    )],
                ),
                ApplyChannel::Web,
                "citizen",
                settings(),
            )
            .await
            .unwrap();
        assert!(matches!(
            store
                .review_application(blocked.summary.id, Verdict::Approve, "ok", "clerk")
                .await,
            Err(ApplicationError::NothingToDecide(_))
        ));
        let rejected = store
            .review_application(
                blocked.summary.id,
                Verdict::Reject,
                "就诊类型不在救助范围",
                "clerk",
            )
            .await
            .unwrap();
        assert_eq!(rejected.summary.state, ApplicationState::Rejected);
        assert_eq!(
            rejected.events.last().unwrap().reason.as_deref(),
            Some("就诊类型不在救助范围")
        );
        let later = store
            .submit_application(
                &request(
                    PERSON,
                    &[bill(
                        "OUT009",
                        "外市医院",
                        "inpatient",
                        "2024-05-01",
                        ["100", "70", "25", "5"],
                    )],
                ),
                ApplyChannel::Web,
                "citizen",
                settings(),
            )
            .await
            .unwrap();
        assert_eq!(
            later.summary.state,
            ApplicationState::Decided,
            "{:?}",
            later.checks
        );

        // The person's applications, newest first; the prefill knows them.
        let person = jiuzhu_core::ResidentId::parse(PERSON).unwrap();
        let mine: Vec<i64> = store
            .applications_of(person)
            .await
            .unwrap()
            .iter()
            .map(|item| item.id)
            .collect();
        assert_eq!(mine, [later.summary.id, blocked.summary.id, id]);
        let prefill = store.application_prefill(person, "clerk").await.unwrap();
        assert!(prefill.signed_current_letter);
        assert_eq!(prefill.spells.len(), 1);
        assert!(prefill
            .bills
            .iter()
            .any(|bill| bill.invoice_no == "INV001" && bill.channel == "feed"));
        assert!(prefill
            .bills
            .iter()
            .any(|bill| bill.invoice_no == "OUT009" && bill.channel == "application"));
        assert_eq!(prefill.applications.len(), 3);
        // Opening an application is a logged read of the person's record.
        let reads = count_reads(&database).await;
        let (opened, history) = store.open_application(id, "reviewer", "review").await.unwrap();
        assert_eq!(count_reads(&database).await, reads + 1);
        assert_eq!(opened.summary.id, id);
        // With the person's history: the feed's bills, the other applications.
        let told: Vec<&str> = history
            .events
            .iter()
            .map(|event| event.summary.as_str())
            .collect();
        assert!(
            told.iter().any(|summary| summary.starts_with("bill INV001")),
            "{told:#?}"
        );
        assert!(
            told.iter()
                .any(|summary| summary.starts_with(&format!("application {} rejected", blocked.summary.id))),
            "{told:#?}"
        );
        assert!(store.verify_audit().await.unwrap().is_ok());
        database.drop_database().await;
    }
}

async fn count_reads(database: &Fresh) -> i64 {
    database
        .number("SELECT COUNT(*) FROM audit_log WHERE action = 'person.read'")
        .await
}

#[tokio::test]
async fn a_bill_the_feed_decides_while_its_application_waits_is_not_decided_twice() {
    for database in fresh_databases("apply_race").await {
        let (store, _) = prepared(&database).await;
        staff(&store).await;
        store.publish_letter("2024-01", LETTER, "admin").await.unwrap();
        signed(&store, PERSON).await;
        // A finding (past the deadline) sends it to a reviewer.
        let late = AcceptanceSettings {
            filing_deadline_days: 10,
            today: Some(Date::parse("2024-06-01").unwrap()),
        };
        let view = store
            .submit_application(
                &request(
                    PERSON,
                    &[
                        bill(
                            "INV001",
                            "H001",
                            "inpatient",
                            "2024-03-01",
                            ["10000", "7000", "2500", "500"],
                        ),
                        bill(
                            "OUT7",
                            "外市医院",
                            "outpatient",
                            "2024-04-02",
                            ["800", "200", "600", "0"],
                        ),
                    ],
                ),
                ApplyChannel::Counter,
                "clerk",
                late,
            )
            .await
            .unwrap();
        assert_eq!(view.summary.state, ApplicationState::NeedsReview);
        assert!(
            view.bills.iter().all(|bill| bill.status == "pending"),
            "{:?}",
            view.bills
        );
        // Meanwhile the insurance feed brings INV001, the same bill.
        import_feed(&store, &read(INVOICES), 1024).await.unwrap();
        let approved = store
            .review_application(view.summary.id, Verdict::Approve, "逾期有正当理由", "reviewer")
            .await
            .unwrap();
        assert_eq!(approved.bills[0].status, "excluded");
        assert_eq!(approved.bills[1].status, "decided");
        let decided = approved.events.last().unwrap();
        assert_eq!(decided.state, "decided");
        let reason = decided.reason.as_deref().unwrap();
        assert!(reason.starts_with("1 bill(s) decided"), "{reason}");
        assert!(
            reason.contains("INV001 (stored meanwhile by another channel)"),
            "{reason}"
        );
        // One decision of INV001: the feed's.
        let decisions = database
            .number("SELECT COUNT(*) FROM decisions WHERE invoice_no = 'INV001' AND kind = 'decision'")
            .await;
        assert_eq!(decisions, 1);
        database.drop_database().await;
    }
}

/// The blind index of a resident ID under the contract's keys.
fn key_of(person: &str) -> Vec<u8> {
    super::keys()
        .blind_index(jiuzhu_store::Purpose::ResidentId, person.as_bytes())
        .to_vec()
}

#[tokio::test]
async fn a_residents_held_bills_are_only_their_own_unassisted_and_turned_down_bills() {
    for database in fresh_databases("held_bills").await {
        let (store, _) = prepared(&database).await;
        import_feed(&store, &read(INVOICES), 100).await.unwrap();
        staff(&store).await;
        store.publish_letter("2024-01", LETTER, "admin").await.unwrap();
        // 017 and 041 each have an application turned down (late: a
        // finding); 041's bill OTHER01 is only theirs.
        let late = AcceptanceSettings {
            filing_deadline_days: 30,
            today: Some(Date::parse("2024-06-01").unwrap()),
        };
        for (person, number) in [(PERSON, "TURNED01"), ("110105196001010041", "OTHER01")] {
            signed(&store, person).await;
            let mut with_scan = bill(
                number,
                "外市医院",
                "inpatient",
                "2024-03-10",
                ["100", "70", "25", "5"],
            );
            with_scan.insert_str(
                with_scan.len() - 1,
                r#","scan":{"media_type":"image/png","content_base64":"iVBORw0KGgphIHNjYW4="}"#,
            );
            let view = store
                .submit_application(
                    &request(person, &[with_scan]),
                    ApplyChannel::Counter,
                    "clerk",
                    late,
                )
                .await
                .unwrap();
            assert_eq!(view.summary.state, ApplicationState::NeedsReview);
            store
                .review_application(view.summary.id, Verdict::Reject, "no proof", "reviewer")
                .await
                .unwrap();
        }

        let before = database.dump().await;
        let held = store.held_bills_of_key(&key_of(PERSON)).await.unwrap();
        // 017's spell; INV007 (2023: no rule) decided without assistance by
        // the feed; INV001 and INV002 assisted are not listed, nor 033's
        // not-eligible INV005.
        assert_eq!(held.spells, [("DB".to_owned(), "2023-01-01".to_owned(), None)]);
        let unassisted: Vec<(&str, &str, &str)> = held
            .unassisted
            .iter()
            .map(|bill| {
                (
                    bill.invoice_no.as_str(),
                    bill.channel.as_str(),
                    bill.outcome.as_str(),
                )
            })
            .collect();
        assert_eq!(unassisted, [("INV007", "feed", "no_rule")]);
        let turned: Vec<&str> = held
            .reapplicable
            .iter()
            .map(|bill| bill.invoice_no.as_str())
            .collect();
        assert_eq!(turned, ["TURNED01"]);
        assert_eq!(
            held.reapplicable[0].amounts.map(Fen::fen),
            [10_000, 7_000, 2_500, 500]
        );
        assert!(held.reapplicable[0].scan.is_none(), "the list reads no scans");
        let other = store
            .held_bills_of_key(&key_of("110105196001010033"))
            .await
            .unwrap();
        let numbers: Vec<&str> = other
            .unassisted
            .iter()
            .map(|bill| bill.invoice_no.as_str())
            .collect();
        assert_eq!(numbers, ["INV005"]);
        assert!(other.reapplicable.is_empty());

        // By number: their own, with its scan; another person's, nothing.
        let own = store
            .reapplicable_bill_of_key(&key_of(PERSON), "TURNED01")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(own.scan.as_ref().map(|scan| scan.0.as_str()), Some("image/png"));
        assert!(store
            .reapplicable_bill_of_key(&key_of(PERSON), "OTHER01")
            .await
            .unwrap()
            .is_none());
        assert!(store
            .reapplicable_bill_of_key(&key_of(PERSON), "INV007")
            .await
            .unwrap()
            .is_none());
        assert_eq!(database.dump().await, before, "reading changes nothing");

        // Applied for again, it is no longer offered.
        store
            .submit_application(
                &request(
                    PERSON,
                    &[bill(
                        "TURNED01",
                        "外市医院",
                        "inpatient",
                        "2024-03-10",
                        ["100", "70", "25", "5"],
                    )],
                ),
                ApplyChannel::Web,
                "citizen",
                settings(),
            )
            .await
            .unwrap();
        let held = store.held_bills_of_key(&key_of(PERSON)).await.unwrap();
        assert!(held.reapplicable.is_empty());
        assert!(store
            .reapplicable_bill_of_key(&key_of(PERSON), "TURNED01")
            .await
            .unwrap()
            .is_none());
    }
}
