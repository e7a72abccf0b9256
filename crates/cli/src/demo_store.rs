//! `jiuzhu serve --demo`: a fresh SQLite store with a realistic district,
//! filled through the same operations a bureau uses: the policy, the
//! departments' spells, the insurance feed's bills, staff with passwords,
//! the commitment letter, applications in each state, a batch paid by the
//! bank and one awaiting approval.

use std::path::Path;

use anyhow::{anyhow, Context as _};
use jiuzhu_core::{Date, ResidentId};
use jiuzhu_formats::application::{parse_application_request, ApplicationLimits};
use jiuzhu_formats::bank::BankAccountRow;
use jiuzhu_formats::{read_invoice_records, read_policy_file, read_spell_rows};
use jiuzhu_store::{AcceptanceSettings, ApplyChannel, FeedOptions, Role, SpellFile, Store, Verdict};

/// The staff of the demo, their roles and their one password.
pub const DEMO_STAFF: [(&str, &str, &[Role]); 4] = [
    ("admin", "管理员", &[Role::Admin]),
    ("shenhe", "审核员", &[Role::Reviewer]),
    ("shenpi", "审批员", &[Role::Approver]),
    ("jicha", "稽查员", &[Role::Auditor]),
];
pub const DEMO_PASSWORD: &str = "jiuzhu-demo-2026";

/// The phone on record of the demo's `index`th applicant.
pub fn demo_phone(index: usize) -> String {
    format!("1380013{:04}", 8000 + index)
}

/// The demo's resident who logs in, and their phone.
pub fn demo_resident(store_persons: &[ResidentId]) -> Option<(ResidentId, String)> {
    store_persons.first().map(|person| (*person, demo_phone(0)))
}

/// The demo's size.
#[derive(Debug, Clone, Copy)]
pub struct DemoSize {
    pub people: u64,
    pub invoices: u64,
}

/// Generates the district into `dir` and fills `store` with it.
/// Returns the resident whose login the demo prints, with their phone.
pub async fn fill(
    store: &Store,
    dir: &Path,
    size: DemoSize,
    today: Date,
) -> anyhow::Result<(ResidentId, String)> {
    let summary = crate::gen::run(&crate::gen::GenArgs {
        people: size.people,
        invoices: size.invoices,
        seed: 2026,
        dir: dir.to_path_buf(),
    })?;
    eprintln!("{summary}");
    let actor = "demo";
    let policy_path = dir.join("policy.toml");
    let policy = read_policy_file(&policy_path, "policy.toml").map_err(|problems| anyhow!("{problems}"))?;
    let source = std::fs::read_to_string(&policy_path)?;
    store.load_policy(&source, &policy, actor).await?;

    let spells = std::fs::read(dir.join("spells.csv"))?;
    let rows =
        read_spell_rows("spells.csv", &spells, Some(&policy)).map_err(|problems| anyhow!("{problems}"))?;
    let file = SpellFile::new("民政", "spells.csv", &spells, &rows);
    store.import_spells(&file, actor).await?;

    let known: Vec<String> = policy
        .visit_types()
        .iter()
        .map(|(name, _)| name.clone())
        .collect();
    let invoices = std::fs::read(dir.join("invoices.csv"))?;
    let records =
        read_invoice_records("invoices.csv", &invoices, &known).map_err(|problems| anyhow!("{problems}"))?;
    store
        .import_invoices("invoices.csv", records, actor, FeedOptions::default(), &|_| {})
        .await
        .map_err(|error| anyhow!("{error}"))?;
    dress(store, &rows, today).await
}

/// Adds the demo to `store`, already filled from the district generated
/// into `dir` (its policy, spells and bills loaded): the staff, the letter,
/// the phones, the applications and the batches of [`fill`]; once (a store
/// dressed before is served as it is).
pub async fn dress_filled(store: &Store, dir: &Path, today: Date) -> anyhow::Result<(ResidentId, String)> {
    let policy_path = dir.join("policy.toml");
    let policy = read_policy_file(&policy_path, "policy.toml").map_err(|problems| anyhow!("{problems}"))?;
    let spells_path = dir.join("spells.csv");
    let spells =
        std::fs::read(&spells_path).with_context(|| format!("cannot read {}", spells_path.display()))?;
    let rows =
        read_spell_rows("spells.csv", &spells, Some(&policy)).map_err(|problems| anyhow!("{problems}"))?;
    // Dressed before (its staff are there): served as it is.
    if store
        .staff_member(DEMO_STAFF[0].0)
        .await
        .map_err(|error| anyhow!("{error}"))?
        .is_some()
    {
        let persons = demo_persons(&rows, today)?;
        return demo_resident(&persons).ok_or_else(|| anyhow!("the demo has no resident"));
    }
    dress(store, &rows, today).await
}

/// The demo's six applicants: persons with an open spell since before a
/// year ago (eligible on any recent day), the first six by ID.
fn demo_persons(rows: &[jiuzhu_formats::SpellRow], today: Date) -> anyhow::Result<Vec<ResidentId>> {
    let year_ago = today.add_days(-366).context("a date a year ago")?;
    let mut persons: Vec<ResidentId> = rows
        .iter()
        .filter(|row| row.spell.valid_to().is_none() && row.spell.valid_from() <= year_ago)
        .map(|row| row.spell.person())
        .collect();
    persons.sort();
    persons.dedup();
    if persons.len() < 6 {
        return Err(anyhow!("the demo district has too few recipients"));
    }
    persons.truncate(6);
    Ok(persons)
}

/// The demo's staff, letter, phones, applications and batches, for the
/// district whose spells are `rows`.
async fn dress(
    store: &Store,
    rows: &[jiuzhu_formats::SpellRow],
    today: Date,
) -> anyhow::Result<(ResidentId, String)> {
    let actor = "demo";
    for (name, _, roles) in DEMO_STAFF {
        store
            .add_staff(name, roles, actor)
            .await
            .map_err(|error| anyhow!("{error}"))?;
        store
            .set_staff_password(name, DEMO_PASSWORD, actor)
            .await
            .map_err(|error| anyhow!("{error}"))?;
    }
    // The counter clerk who enters applications on citizens' behalf.
    store
        .add_staff("chuangkou", &[Role::Reviewer], actor)
        .await
        .map_err(|error| anyhow!("{error}"))?;
    let letter = store
        .publish_letter(
            "2026-01",
            "本人承诺：所提交的医疗费用票据真实、完整，未在其他渠道重复报销；如有不实，愿退回救助资金并承担相应责任。",
            "admin",
        )
        .await
        .map_err(|error| anyhow!("{error}"))?;

    let persons = &demo_persons(rows, today)?;
    for (index, person) in persons.iter().enumerate() {
        store
            .sign_letter(*person, &letter.sha256, ApplyChannel::Web, "citizen")
            .await
            .map_err(|error| anyhow!("{error}"))?;
        store
            .set_phone(*person, &demo_phone(index), actor)
            .await
            .map_err(|error| anyhow!("{error}"))?;
    }
    let day = |days: i32| {
        today
            .add_days(-days)
            .map(|date| date.to_string())
            .unwrap_or_default()
    };
    let bill = |number: &str, date: &str, amounts: [&str; 4]| {
        format!(
            r#"{{"invoice_no":"{number}","hospital":"外市中心医院","visit_type":"inpatient","service_date":"{date}",
            "settled_at":"{date}T15:30:00+08:00","total":"{}","fund_paid":"{}","in_scope_self_pay":"{}",
            "out_of_scope_self_pay":"{}"}}"#,
            amounts[0], amounts[1], amounts[2], amounts[3]
        )
    };
    let settings = AcceptanceSettings {
        filing_deadline_days: 365,
        today: Some(today),
    };
    let bills = [
        bill("WS2026-0001", &day(40), ["12000", "7800", "3600", "600"]),
        bill("WS2026-0002", &day(35), ["8600", "5200", "2900", "500"]),
        // Past the filing deadline: to review.
        bill("WS2025-0003", &day(400), ["6400", "4100", "2000", "300"]),
        // Amounts that do not add up: to review.
        bill("WS2026-0004", &day(20), ["5000", "3000", "1500", "400"]),
        bill("WS2026-0005", &day(50), ["9900", "6000", "3300", "600"]),
        bill("WS2026-0006", &day(15), ["4300", "2500", "1500", "300"]),
    ];
    for (person, bill) in persons.iter().zip(bills) {
        let body = format!(r#"{{"person_id":"{person}","bills":[{bill}]}}"#);
        let request = parse_application_request(body.as_bytes(), ApplicationLimits::default())
            .map_err(|errors| anyhow!("{}", errors.message()))?;
        store
            .submit_application(&request, ApplyChannel::Counter, "chuangkou", settings)
            .await
            .map_err(|error| anyhow!("{error}"))?;
    }
    // Applications 5 and 6: sent to review by a deadline of 10 days, then
    // one approved and one rejected.
    let strict = AcceptanceSettings {
        filing_deadline_days: 10,
        today: Some(today),
    };
    for (index, verdict, reason) in [
        (4, Verdict::Approve, "异地就医票据已核验，逾期有正当理由"),
        (5, Verdict::Reject, "票据为复印件，请提交原件扫描"),
    ] {
        let body = format!(
            r#"{{"person_id":"{}","bills":[{}]}}"#,
            persons[index],
            bill(
                &format!("WS2026-1{index:03}"),
                &day(60),
                ["7000", "4000", "2500", "500"]
            )
        );
        let request = parse_application_request(body.as_bytes(), ApplicationLimits::default())
            .map_err(|errors| anyhow!("{}", errors.message()))?;
        let view = store
            .submit_application(&request, ApplyChannel::Counter, "chuangkou", strict)
            .await
            .map_err(|error| anyhow!("{error}"))?;
        store
            .review_application(view.summary.id, verdict, reason, "shenhe")
            .await
            .map_err(|error| anyhow!("{error}"))?;
    }

    // Bank accounts for the applicants; a batch paid by the bank, then one
    // awaiting approval.
    let accounts: Vec<BankAccountRow> = persons
        .iter()
        .enumerate()
        .map(|(index, person)| BankAccountRow {
            line: index as u64 + 2,
            person: *person,
            holder_name: format!("居民{}", index + 1),
            bank: "农业银行".to_owned(),
            account: format!("62284800{:08}", 1000 + index),
        })
        .collect();
    store
        .load_bank_accounts("accounts.csv", &accounts, "chuangkou")
        .await
        .map_err(|error| anyhow!("{error}"))?;
    if let Some(first) = store
        .create_batch("chuangkou")
        .await
        .map_err(|error| anyhow!("{error}"))?
        .batch
    {
        store
            .approve_batch(first.id, "shenpi")
            .await
            .map_err(|error| anyhow!("{error}"))?;
        let lines = store
            .export_batch(first.id, "shenpi")
            .await
            .map_err(|error| anyhow!("{error}"))?;
        let mut text = String::from("line_id,status,reason\n");
        for line in &lines {
            text.push_str(&format!("{},paid,\n", line.line_id));
        }
        let rows = jiuzhu_formats::bank::read_bank_return("return.csv", text.as_bytes())
            .map_err(|problems| anyhow!("{problems}"))?;
        store
            .import_bank_return(first.id, "return.csv", &rows, "chuangkou")
            .await
            .map_err(|error| anyhow!("{error}"))?;
    }
    // A later application, decided, and its batch awaiting approval.
    let body = format!(
        r#"{{"person_id":"{}","bills":[{}]}}"#,
        persons[0],
        bill("WS2026-2001", &day(5), ["6600", "4000", "2200", "400"])
    );
    let request = parse_application_request(body.as_bytes(), ApplicationLimits::default())
        .map_err(|errors| anyhow!("{}", errors.message()))?;
    store
        .submit_application(&request, ApplyChannel::Counter, "chuangkou", settings)
        .await
        .map_err(|error| anyhow!("{error}"))?;
    store
        .create_batch("chuangkou")
        .await
        .map_err(|error| anyhow!("{error}"))?;
    demo_resident(persons).ok_or_else(|| anyhow!("the demo has no resident"))
}
