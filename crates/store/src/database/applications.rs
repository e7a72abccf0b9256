//! Applications (救助申请) for the bills that real time and the insurance
//! feed missed, smart acceptance (智能受理), review (救助审核), and the
//! commitment letter (告知承诺书) a person signs before applying.
//!
//! A submission is one transaction. It is refused whole, changing nothing,
//! when the person has not signed the current commitment letter or no
//! policy is loaded. Otherwise every check of smart acceptance runs at once,
//! on every bill, and each result is stored with the application
//! (`application_checks`), passed or not:
//!
//! | check | fails when |
//! | --- | --- |
//! | `amounts_add_up` | `fund_paid + in_scope_self_pay + out_of_scope_self_pay ≠ total` |
//! | `visit_type_known` | the policy in force does not map the visit type |
//! | `not_decided` | the store holds a bill under the number (real time, the feed, an application) |
//! | `not_applied` | a pending or decided bill of another application, or an earlier line, has the number |
//! | `no_suspected_duplicate` | the person has a bill of the same hospital, service date and total under another number |
//! | `eligible` | the person holds no category of the policy on the service date |
//! | `within_deadline` | the service date is more than the filing deadline before the submission |
//!
//! A bill failing one of the first four cannot be decided: it is
//! *excluded* at once, with its finding. An application with no finding
//! is accepted and its bills are decided by the engine in the same
//! transaction (channel `application`); any finding sends it to a
//! reviewer (`needs_review`). A reviewer (role `reviewer`, never the
//! person who entered it) approves it, and its pending bills are decided,
//! or rejects it; both need a reason. Each change of state is an
//! `application_events` row with who and when: submitted, accepted,
//! needs_review, approved, rejected, decided, and paid when the bank
//! paid the line that carried its bills.

use base64::Engine as _;
use jiuzhu_core::{Date, Fen, ResidentId};
use jiuzhu_formats::application::ApplicationRequest;
use sha2::{Digest, Sha256};
use thiserror::Error;

use super::{Backend, PersonStory, Store, StoreError};
use crate::crypto::{ApiKey, ApiKeyHash, Purpose};

/// A staff role. Each route and each step checks the one it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reviews applications (救助审核).
    Reviewer,
    /// Approves payment batches.
    Approver,
    /// Reads the audit trail.
    Auditor,
    /// Manages users, keys and policy.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reviewer, Role::Approver, Role::Auditor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reviewer => "reviewer",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

/// A member of staff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffUser {
    pub name: String,
    pub roles: Vec<Role>,
}

impl StaffUser {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Through which channel a person signed or applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyChannel {
    /// The citizen's web pages.
    Web,
    /// The citizen's phone (app or mini-program).
    Phone,
    /// Staff at the bureau's counter, on the citizen's behalf.
    Counter,
}

impl ApplyChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyChannel::Web => "web",
            ApplyChannel::Phone => "phone",
            ApplyChannel::Counter => "counter",
        }
    }

    pub fn parse(text: &str) -> Option<ApplyChannel> {
        [ApplyChannel::Web, ApplyChannel::Phone, ApplyChannel::Counter]
            .into_iter()
            .find(|channel| channel.as_str() == text)
    }
}

/// A version of the commitment letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub id: i64,
    pub version: String,
    pub body: String,
    /// The SHA-256 of the body, lowercase hex: what a signature records.
    pub sha256: String,
    pub published_at: String,
}

/// A signature of the commitment letter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub id: i64,
    pub letter_version: String,
    pub sha256: String,
    pub channel: String,
    pub signed_at: String,
}

/// Where an application stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplicationState {
    NeedsReview,
    Approved,
    Rejected,
    Decided,
    Paid,
}

impl ApplicationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationState::NeedsReview => "needs_review",
            ApplicationState::Approved => "approved",
            ApplicationState::Rejected => "rejected",
            ApplicationState::Decided => "decided",
            ApplicationState::Paid => "paid",
        }
    }

    fn parse(text: &str) -> Result<ApplicationState, StoreError> {
        [
            ApplicationState::NeedsReview,
            ApplicationState::Approved,
            ApplicationState::Rejected,
            ApplicationState::Decided,
            ApplicationState::Paid,
        ]
        .into_iter()
        .find(|state| state.as_str() == text)
        .ok_or_else(|| StoreError::Damaged(format!("an application has the unknown state {text:?}")))
    }
}

/// An application in a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationSummary {
    pub id: i64,
    pub person_masked: String,
    pub state: ApplicationState,
    pub channel: String,
    pub entered_by: String,
    pub submitted_at: String,
    pub bills: u64,
    /// Checks that did not pass.
    pub findings: u64,
    /// The in-scope self-pay of its bills: what assistance is computed on.
    pub in_scope_self_pay: Fen,
}

/// A bill of an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationBillView {
    /// 1-based, in the order submitted.
    pub line: u32,
    pub invoice_no: String,
    pub hospital: String,
    pub visit_type: String,
    pub service_date: String,
    pub settled_at: String,
    /// total, fund_paid, in_scope_self_pay, out_of_scope_self_pay.
    pub amounts: [Fen; 4],
    /// The scan's type, size and SHA-256 (hex), if one was sent.
    pub scan: Option<(String, u64, String)>,
    /// pending, decided, excluded or rejected.
    pub status: String,
    /// The engine's outcome and amount, once decided.
    pub decision: Option<(String, Fen)>,
}

/// One check of smart acceptance on one bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub line: u32,
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// One change of an application's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationEvent {
    pub state: String,
    pub at: String,
    pub actor: String,
    pub reason: Option<String>,
}

/// An application with its bills, checks and history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationView {
    pub summary: ApplicationSummary,
    pub bills: Vec<ApplicationBillView>,
    pub checks: Vec<CheckResult>,
    pub events: Vec<ApplicationEvent>,
}

impl ApplicationView {
    /// The checks that did not pass.
    pub fn findings(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks.iter().filter(|check| !check.passed)
    }
}

/// What the bureau already knows of a person, to prefill an application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefill {
    pub person_masked: String,
    /// Current spells: category, from, to (None: open), source.
    pub spells: Vec<(String, String, Option<String>, String)>,
    /// The current letter's version and hash, if one is published.
    pub letter: Option<(String, String)>,
    /// Whether the person signed the current letter.
    pub signed_current_letter: bool,
    /// The bank account in use: holder, bank, masked number.
    pub bank_account: Option<(String, String, String)>,
    /// Bills the store holds: number, hospital, service date, total,
    /// channel, outcome, amount granted.
    pub bills: Vec<KnownBill>,
    pub applications: Vec<ApplicationSummary>,
}

/// A bill the store holds for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownBill {
    pub invoice_no: String,
    pub hospital: String,
    pub service_date: String,
    pub total: Fen,
    pub channel: String,
    pub outcome: String,
    pub amount: Fen,
}

/// What the apply page shows a resident of the bills the bureau already
/// holds for them ([`Store::held_bills_of_key`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldBills {
    /// The person's current spells: category code, first day, last day
    /// (`None`: open).
    pub spells: Vec<(String, String, Option<String>)>,
    /// Bills real time or the feed decided without assistance (not
    /// eligible, no rule, or nothing granted), not reversed and in no
    /// pending or decided application, newest service date first. They
    /// cannot be applied for: an application would decide them a second
    /// time; the next periodic clearing recomputes them with the spells
    /// and policy known then and pays any difference.
    pub unassisted: Vec<UnassistedBill>,
    /// Bills of the person's rejected applications that no channel has
    /// decided and no pending or decided application holds: these may be
    /// applied for again, their fields taken from the store.
    pub reapplicable: Vec<HeldBill>,
}

/// A bill decided without assistance, as its decision stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnassistedBill {
    pub invoice_no: String,
    pub hospital: String,
    pub visit_type: String,
    pub service_date: String,
    pub total: Fen,
    pub in_scope_self_pay: Fen,
    /// `realtime` or `feed`.
    pub channel: String,
    pub outcome: String,
    pub amount: Fen,
    pub decided_at: String,
}

/// A bill of a rejected application, as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBill {
    pub invoice_no: String,
    pub hospital: String,
    pub visit_type: String,
    pub service_date: String,
    pub settled_at: String,
    /// total, fund_paid, in_scope_self_pay, out_of_scope_self_pay.
    pub amounts: [Fen; 4],
    /// The application it was last in.
    pub application: i64,
    /// Its scan, if one came with it: type and bytes.
    pub scan: Option<ScanContent>,
}

/// A reviewer's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Approve,
    Reject,
}

/// How acceptance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcceptanceSettings {
    /// A bill may be applied for until this many days after its service
    /// date.
    pub filing_deadline_days: u32,
    /// The day of submission; `None`: today in China.
    pub today: Option<Date>,
}

impl Default for AcceptanceSettings {
    fn default() -> AcceptanceSettings {
        AcceptanceSettings {
            filing_deadline_days: 365,
            today: None,
        }
    }
}

/// Why an application step changed nothing.
#[derive(Debug, Error)]
pub enum ApplicationError {
    #[error("there is no application {0}")]
    NotFound(i64),
    #[error("no commitment letter is published yet")]
    NoLetter,
    #[error("the person has not signed the current commitment letter (version {version}); sign it first")]
    NotSigned { version: String },
    #[error("the letter signed is not the current one (version {current}, SHA-256 {sha256}); read it again and sign")]
    LetterChanged { current: String, sha256: String },
    #[error("the store knows nothing of this person (no spell and no bill)")]
    UnknownPerson,
    #[error("{0} is not a member of staff")]
    NotStaff(String),
    #[error("{name} does not have the role {role}")]
    MissingRole { name: String, role: &'static str },
    #[error("{actor} entered application {application}: another reviewer must decide it")]
    SelfReview { application: i64, actor: String },
    #[error("application {id} is {state}, not waiting for review")]
    NotInReview { id: i64, state: &'static str },
    #[error("a reason is required")]
    ReasonRequired,
    #[error("every bill of application {0} is excluded: nothing can be approved; reject it")]
    NothingToDecide(i64),
    #[error("no policy is loaded: nothing can be decided")]
    NoPolicy,
    #[error("{0}")]
    Invalid(String),
    /// The state of things refuses the step.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for ApplicationError {
    fn from(error: sqlx::Error) -> ApplicationError {
        ApplicationError::Store(StoreError::from(error))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A bill as it goes into the store, with what decides it.
struct BillRow {
    line: u32,
    invoice_no: String,
    hospital: String,
    visit_type: String,
    service_date: Date,
    settled_at: String,
    amounts: [i64; 4],
    scan: Option<(&'static str, Vec<u8>, Vec<u8>)>,
    /// The bill as the engine reads it, when its amounts add up.
    invoice: Option<jiuzhu_core::Invoice>,
}

/// A submission prepared outside its transaction.
struct Submission<'s> {
    person: ResidentId,
    key: Vec<u8>,
    masked: String,
    encrypted: Vec<u8>,
    channel: ApplyChannel,
    entered_by: &'s str,
    bills: Vec<BillRow>,
    request_sha256: Vec<u8>,
    today: Date,
    deadline_days: u32,
}

impl Store {
    /// Adds a member of staff with their roles, or changes the roles of
    /// one; returns a new API token for them, shown once and stored only as
    /// its hash.
    pub async fn add_staff(
        &self,
        name: &str,
        roles: &[Role],
        actor: &str,
    ) -> Result<String, ApplicationError> {
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_whitespace) {
            return Err(ApplicationError::Invalid(
                "a staff name is 1 to 64 characters without spaces".into(),
            ));
        }
        if roles.is_empty() {
            return Err(ApplicationError::Invalid(
                "a member of staff needs at least one role".into(),
            ));
        }
        let roles = super::staff::roles_text(roles);
        let (token, hash) = ApiKey::generate().map_err(StoreError::from)?;
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::add_staff(pool, name, &roles, &hash, actor).await?,
            Backend::Postgres(pool) => {
                postgres_applications::add_staff(pool, name, &roles, &hash, actor).await?
            }
        }
        Ok(token.into_string())
    }

    /// The member of staff a token belongs to, if it is known, not revoked
    /// and its user not disabled.
    pub async fn staff_for_token(&self, token: &str) -> Result<Option<StaffUser>, StoreError> {
        let hash = ApiKeyHash::of(token);
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::staff_for_token(pool, &hash).await,
            Backend::Postgres(pool) => postgres_applications::staff_for_token(pool, &hash).await,
        }
    }

    /// A member of staff by name.
    pub async fn staff(&self, name: &str) -> Result<Option<StaffUser>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::staff(pool, name).await,
            Backend::Postgres(pool) => postgres_applications::staff(pool, name).await,
        }
    }

    /// Publishes a new version of the commitment letter; from now on it is
    /// the one to sign.
    pub async fn publish_letter(
        &self,
        version: &str,
        body: &str,
        actor: &str,
    ) -> Result<Letter, ApplicationError> {
        if version.trim().is_empty() || body.trim().is_empty() {
            return Err(ApplicationError::Invalid(
                "a commitment letter needs a version and a text".into(),
            ));
        }
        let sha256 = Sha256::digest(body.as_bytes()).to_vec();
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlite_applications::publish_letter(pool, version, body, &sha256, actor).await
            }
            Backend::Postgres(pool) => {
                postgres_applications::publish_letter(pool, version, body, &sha256, actor).await
            }
        }
    }

    /// The current commitment letter.
    pub async fn current_letter(&self) -> Result<Option<Letter>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::current_letter(pool).await,
            Backend::Postgres(pool) => postgres_applications::current_letter(pool).await,
        }
    }

    /// Records that `person` signed the letter whose text has the SHA-256
    /// `sha256` (hex), which must be the current one.
    pub async fn sign_letter(
        &self,
        person: ResidentId,
        sha256: &str,
        channel: ApplyChannel,
        actor: &str,
    ) -> Result<Signature, ApplicationError> {
        let key = self.person_key(person);
        self.sign_letter_as(&key, &person.masked(), sha256, channel, actor)
            .await
    }

    /// [`Store::sign_letter`] for the person with the blind index `key`
    /// (a resident signing on their own page).
    pub async fn sign_letter_as(
        &self,
        key: &[u8],
        masked: &str,
        sha256: &str,
        channel: ApplyChannel,
        actor: &str,
    ) -> Result<Signature, ApplicationError> {
        let sha256 = sha256.trim().to_ascii_lowercase();
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlite_applications::sign(pool, key, masked, &sha256, channel, actor).await
            }
            Backend::Postgres(pool) => {
                postgres_applications::sign(pool, key, masked, &sha256, channel, actor).await
            }
        }
    }

    /// Whether the person with the blind index `key` signed the current
    /// letter.
    pub async fn signed_current_letter(&self, key: &[u8]) -> Result<bool, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::signed_current(pool, key).await,
            Backend::Postgres(pool) => postgres_applications::signed_current(pool, key).await,
        }
    }

    /// What the bureau knows of `person` to prefill an application. The
    /// read is logged as `actor` reading the person's record.
    pub async fn application_prefill(&self, person: ResidentId, actor: &str) -> Result<Prefill, StoreError> {
        let key = self.person_key(person);
        let masked = person.masked();
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::prefill(pool, &key, &masked, actor).await,
            Backend::Postgres(pool) => postgres_applications::prefill(pool, &key, &masked, actor).await,
        }
    }

    /// Submits an application (see the module's documentation): stored
    /// with the result of every check, and decided at once when clean.
    pub async fn submit_application(
        &self,
        request: &ApplicationRequest,
        channel: ApplyChannel,
        entered_by: &str,
        settings: AcceptanceSettings,
    ) -> Result<ApplicationView, ApplicationError> {
        let person = request.person;
        let row = self.person_row(person).map_err(StoreError::from)?;
        let mut digest = Sha256::new();
        digest.update(person.to_string().as_bytes());
        let mut bills = Vec::with_capacity(request.bills.len());
        for (index, bill) in request.bills.iter().enumerate() {
            let [total, fund_paid, in_scope, out_of_scope] = bill.amounts;
            let invoice = jiuzhu_core::BillAmounts::new(total, fund_paid, in_scope, out_of_scope)
                .ok()
                .map(|amounts| jiuzhu_core::Invoice {
                    invoice_no: bill.invoice_no.clone(),
                    person,
                    hospital: bill.hospital.clone(),
                    visit_type: bill.visit_type.clone(),
                    service_date: bill.service_date,
                    settled_at: bill.settled_at.clone(),
                    amounts,
                });
            let scan = bill.scan.as_ref().map(|scan| {
                let sha = Sha256::digest(&scan.bytes).to_vec();
                (scan.media_type, scan.bytes.clone(), sha)
            });
            let amounts = bill.amounts.map(Fen::fen);
            digest.update(
                format!(
                    "\n{}|{}|{}|{}|{}|{:?}|{}",
                    bill.invoice_no,
                    bill.hospital.as_str(),
                    bill.visit_type,
                    bill.service_date,
                    bill.settled_at,
                    amounts,
                    scan.as_ref().map_or_else(String::new, |scan| hex(&scan.2))
                )
                .as_bytes(),
            );
            bills.push(BillRow {
                line: index as u32 + 1,
                invoice_no: bill.invoice_no.as_str().to_owned(),
                hospital: bill.hospital.as_str().to_owned(),
                visit_type: bill.visit_type.clone(),
                service_date: bill.service_date,
                settled_at: bill.settled_at.to_string(),
                amounts,
                scan,
                invoice,
            });
        }
        let today = match settings.today {
            Some(today) => today,
            None => super::today_in_china()?,
        };
        let submission = Submission {
            person,
            key: row.key.clone(),
            masked: row.masked.clone(),
            encrypted: row.encrypted.clone(),
            channel,
            entered_by,
            bills,
            request_sha256: digest.finalize().to_vec(),
            today,
            deadline_days: settings.filing_deadline_days,
        };
        let id = match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::submit(pool, &self.policy, &submission).await?,
            Backend::Postgres(pool) => postgres_applications::submit(pool, &self.policy, &submission).await?,
        };
        self.read_application(id).await
    }

    /// The applications waiting for a reviewer, oldest first. `actor` must
    /// have the role `reviewer`.
    pub async fn review_queue(&self, actor: &str) -> Result<Vec<ApplicationSummary>, ApplicationError> {
        self.require(actor, Role::Reviewer).await?;
        Ok(match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::summaries(pool, None, Some("needs_review")).await?,
            Backend::Postgres(pool) => {
                postgres_applications::summaries(pool, None, Some("needs_review")).await?
            }
        })
    }

    /// An application as staff open it, with the person's whole story
    /// (their spells, bills, other applications, payments). The read is
    /// logged as `actor` reading the person's record for `purpose`.
    pub async fn open_application(
        &self,
        id: i64,
        actor: &str,
        purpose: &str,
    ) -> Result<(ApplicationView, PersonStory), ApplicationError> {
        let view = self.read_application(id).await?;
        let key = match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::person_key(pool, id).await?,
            Backend::Postgres(pool) => postgres_applications::person_key(pool, id).await?,
        };
        let purpose = format!("application {id}: {purpose}");
        let story = self
            .story_of_key(&key, &view.summary.person_masked, actor, &purpose)
            .await?
            .ok_or(ApplicationError::NotFound(id))?;
        Ok((view, story))
    }

    /// An application, unlogged: for the person's own channels and for the
    /// answers of this module.
    pub async fn read_application(&self, id: i64) -> Result<ApplicationView, ApplicationError> {
        let view = match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::view(pool, id).await?,
            Backend::Postgres(pool) => postgres_applications::view(pool, id).await?,
        };
        view.ok_or(ApplicationError::NotFound(id))
    }

    /// A person's applications, newest first.
    pub async fn applications_of(&self, person: ResidentId) -> Result<Vec<ApplicationSummary>, StoreError> {
        let key = self.person_key(person);
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::summaries(pool, Some(&key), None).await,
            Backend::Postgres(pool) => postgres_applications::summaries(pool, Some(&key), None).await,
        }
    }

    /// A person's applications by their blind index (a resident's own
    /// pages), newest first, each with its history.
    pub async fn applications_of_key(&self, key: &[u8]) -> Result<Vec<ApplicationView>, ApplicationError> {
        let summaries = match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::summaries(pool, Some(key), None).await?,
            Backend::Postgres(pool) => postgres_applications::summaries(pool, Some(key), None).await?,
        };
        let mut views = Vec::with_capacity(summaries.len());
        for summary in summaries {
            views.push(self.read_application(summary.id).await?);
        }
        Ok(views)
    }

    /// A reviewer's verdict on an application waiting for review. Approved,
    /// its pending bills are decided by the engine at once.
    pub async fn review_application(
        &self,
        id: i64,
        verdict: Verdict,
        reason: &str,
        actor: &str,
    ) -> Result<ApplicationView, ApplicationError> {
        self.require(actor, Role::Reviewer).await?;
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(ApplicationError::ReasonRequired);
        }
        let decrypt = |encrypted: &[u8]| -> Result<ResidentId, StoreError> {
            let plain = self.keys.decrypt(Purpose::ResidentId, encrypted)?;
            std::str::from_utf8(&plain)
                .ok()
                .and_then(|text| ResidentId::parse(text).ok())
                .ok_or_else(|| StoreError::Damaged("a stored resident ID does not decrypt".into()))
        };
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlite_applications::review(pool, &self.policy, id, verdict, reason, actor, &decrypt).await?
            }
            Backend::Postgres(pool) => {
                postgres_applications::review(pool, &self.policy, id, verdict, reason, actor, &decrypt)
                    .await?
            }
        }
        self.read_application(id).await
    }

    /// Refuses unless `actor` is a member of staff with `role`.
    pub async fn require(&self, actor: &str, role: Role) -> Result<StaffUser, ApplicationError> {
        let user = self
            .staff(actor)
            .await?
            .ok_or_else(|| ApplicationError::NotStaff(actor.to_owned()))?;
        if !user.has(role) {
            return Err(ApplicationError::MissingRole {
                name: actor.to_owned(),
                role: role.as_str(),
            });
        }
        Ok(user)
    }

    /// The bills the bureau holds for the person with the blind index
    /// `key` (a resident's own apply page): their spells, the bills
    /// decided without assistance, and the bills they may apply for again
    /// (see [`HeldBills`]). Only that person's bills.
    pub async fn held_bills_of_key(&self, key: &[u8]) -> Result<HeldBills, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::held_bills(pool, key, None).await,
            Backend::Postgres(pool) => postgres_applications::held_bills(pool, key, None).await,
        }
    }

    /// One bill the person with the blind index `key` may apply for again,
    /// read by its number with its scan; `None` if it is not one of theirs
    /// (another person's, decided meanwhile, or in a live application).
    pub async fn reapplicable_bill_of_key(
        &self,
        key: &[u8],
        invoice_no: &str,
    ) -> Result<Option<HeldBill>, StoreError> {
        let held = match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::held_bills(pool, key, Some(invoice_no)).await?,
            Backend::Postgres(pool) => postgres_applications::held_bills(pool, key, Some(invoice_no)).await?,
        };
        Ok(held
            .reapplicable
            .into_iter()
            .find(|bill| bill.invoice_no == invoice_no))
    }

    fn person_key(&self, person: ResidentId) -> Vec<u8> {
        self.keys
            .blind_index(Purpose::ResidentId, person.to_string().as_bytes())
            .to_vec()
    }
}

/// The scan of a bill, for whoever may see it: type and bytes.
pub type ScanContent = (String, Vec<u8>);

impl Store {
    /// The scan of one bill of an application.
    pub async fn application_scan(&self, id: i64, line: u32) -> Result<Option<ScanContent>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => sqlite_applications::scan(pool, id, line).await,
            Backend::Postgres(pool) => postgres_applications::scan(pool, id, line).await,
        }
    }
}

/// The scan as base64, for JSON answers that carry it.
pub fn scan_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

macro_rules! applications_backend {
    ($module:ident, $backend:ident, $Pool:ty, $Db:ty) => {
        mod $module {
            use std::collections::HashMap;

            use jiuzhu_core::{category_on, Date, Fen, ResidentId, Spell};
            use sqlx::Row as _;

            use super::{
                hex, ApplicationBillView, ApplicationError, ApplicationEvent, ApplicationState, ApplicationSummary,
                ApplicationView, ApplyChannel, CheckResult, HeldBill, HeldBills, KnownBill, Letter, Prefill, Role,
                Signature, StaffUser, Submission, UnassistedBill, Verdict,
            };
            use crate::crypto::ApiKeyHash;
            use crate::database::staff::{holds_admin, StaffError};
            use crate::database::$backend::{audit, begin_write, decide_in, policy_in, spell_of};
            use crate::database::{
                json_string, now_text, AuditRecord, Channel, Decided, FeedAnswer, PersonRow, PolicyCache, SettleRequest,
                StoreError,
            };

            type Pool = $Pool;
            type Tx<'t> = sqlx::Transaction<'t, $Db>;

            pub(super) async fn add_staff(
                pool: &Pool,
                name: &str,
                roles: &str,
                hash: &ApiKeyHash,
                actor: &str,
            ) -> Result<(), ApplicationError> {
                let mut tx = begin_write(pool).await?;
                let now = now_text();
                // A known name has its roles changed and is enabled again:
                // the last enabled admin keeps the role.
                let before: Option<String> = sqlx::query_scalar(
                    "SELECT roles FROM staff_users WHERE name = $1 AND disabled_at IS NULL",
                )
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
                if before.as_deref().is_some_and(holds_admin) && !holds_admin(roles) {
                    let others: Vec<String> = sqlx::query_scalar(
                        "SELECT roles FROM staff_users WHERE disabled_at IS NULL AND name <> $1",
                    )
                    .bind(name)
                    .fetch_all(&mut *tx)
                    .await?;
                    if !others.iter().any(|roles| holds_admin(roles)) {
                        return Err(ApplicationError::Refused(
                            StaffError::LastAdmin(name.to_owned()).to_string(),
                        ));
                    }
                }
                sqlx::query(
                    "INSERT INTO staff_users (name, roles, created_at, created_by) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (name) DO UPDATE SET roles = excluded.roles, disabled_at = NULL, \
                     disabled_by = NULL, disabled_reason = NULL",
                )
                .bind(name)
                .bind(roles)
                .bind(&now)
                .bind(actor)
                .execute(&mut *tx)
                .await?;
                sqlx::query("INSERT INTO staff_tokens (token_hash, name, created_at) VALUES ($1, $2, $3)")
                    .bind(hash.as_bytes().to_vec())
                    .bind(name)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                let details = format!("{{\"roles\":{}}}", json_string(roles));
                audit(&mut tx, actor, "staff.add", &format!("staff {name}"), details).await?;
                tx.commit().await?;
                Ok(())
            }

            fn staff_of(name: String, roles: &str) -> StaffUser {
                StaffUser { name, roles: roles.split(' ').filter_map(Role::parse).collect() }
            }

            pub(super) async fn staff_for_token(pool: &Pool, hash: &ApiKeyHash) -> Result<Option<StaffUser>, StoreError> {
                let row = sqlx::query(
                    "SELECT u.name, u.roles FROM staff_tokens t JOIN staff_users u ON u.name = t.name \
                     WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.disabled_at IS NULL",
                )
                .bind(hash.as_bytes().to_vec())
                .fetch_optional(pool)
                .await?;
                match row {
                    Some(row) => Ok(Some(staff_of(row.try_get(0)?, &row.try_get::<String, _>(1)?))),
                    None => Ok(None),
                }
            }

            pub(super) async fn staff(pool: &Pool, name: &str) -> Result<Option<StaffUser>, StoreError> {
                let row =
                    sqlx::query("SELECT name, roles FROM staff_users WHERE name = $1 AND disabled_at IS NULL")
                        .bind(name)
                        .fetch_optional(pool)
                        .await?;
                match row {
                    Some(row) => Ok(Some(staff_of(row.try_get(0)?, &row.try_get::<String, _>(1)?))),
                    None => Ok(None),
                }
            }

            fn letter_of(row: &<$Db as sqlx::Database>::Row) -> Result<Letter, StoreError> {
                Ok(Letter {
                    id: row.try_get("id")?,
                    version: row.try_get("version")?,
                    body: row.try_get("body")?,
                    sha256: hex(&row.try_get::<Vec<u8>, _>("body_sha256")?),
                    published_at: row.try_get("published_at")?,
                })
            }

            pub(super) async fn publish_letter(
                pool: &Pool,
                version: &str,
                body: &str,
                sha256: &[u8],
                actor: &str,
            ) -> Result<Letter, ApplicationError> {
                let mut tx = begin_write(pool).await?;
                let same = sqlx::query("SELECT version FROM commitment_letters WHERE version = $1 OR body_sha256 = $2")
                    .bind(version)
                    .bind(sha256.to_vec())
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(same) = same {
                    let existing: String = same.try_get(0)?;
                    return Err(ApplicationError::Invalid(format!(
                        "version {existing} already has this version name or this text; a new version needs both new"
                    )));
                }
                let row = sqlx::query(
                    "INSERT INTO commitment_letters (version, body, body_sha256, published_at, published_by) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id, version, body, body_sha256, published_at",
                )
                .bind(version)
                .bind(body)
                .bind(sha256.to_vec())
                .bind(now_text())
                .bind(actor)
                .fetch_one(&mut *tx)
                .await?;
                let letter = letter_of(&row)?;
                let details = format!("{{\"sha256\":\"{}\"}}", letter.sha256);
                audit(&mut tx, actor, "letter.publish", &format!("commitment letter {version}"), details).await?;
                tx.commit().await?;
                Ok(letter)
            }

            pub(super) async fn current_letter(pool: &Pool) -> Result<Option<Letter>, StoreError> {
                let row = sqlx::query(
                    "SELECT id, version, body, body_sha256, published_at FROM commitment_letters ORDER BY id DESC LIMIT 1",
                )
                .fetch_optional(pool)
                .await?;
                row.as_ref().map(letter_of).transpose()
            }

            async fn current_letter_in(tx: &mut Tx<'_>) -> Result<Option<(i64, String, Vec<u8>)>, StoreError> {
                let row = sqlx::query("SELECT id, version, body_sha256 FROM commitment_letters ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut **tx)
                    .await?;
                match row {
                    Some(row) => Ok(Some((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))),
                    None => Ok(None),
                }
            }

            pub(super) async fn sign(
                pool: &Pool,
                key: &[u8],
                masked: &str,
                sha256: &str,
                channel: ApplyChannel,
                actor: &str,
            ) -> Result<Signature, ApplicationError> {
                let mut tx = begin_write(pool).await?;
                let Some((letter, version, body_sha256)) = current_letter_in(&mut tx).await? else {
                    return Err(ApplicationError::NoLetter);
                };
                if hex(&body_sha256) != sha256 {
                    return Err(ApplicationError::LetterChanged { current: version, sha256: hex(&body_sha256) });
                }
                let known = sqlx::query("SELECT 1 FROM persons WHERE person_key = $1")
                    .bind(key.to_vec())
                    .fetch_optional(&mut *tx)
                    .await?;
                if known.is_none() {
                    return Err(ApplicationError::UnknownPerson);
                }
                let now = now_text();
                let id: i64 = sqlx::query(
                    "INSERT INTO commitment_signatures (person_key, letter_id, body_sha256, channel, signed_at, \
                     recorded_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                )
                .bind(key.to_vec())
                .bind(letter)
                .bind(body_sha256.clone())
                .bind(channel.as_str())
                .bind(&now)
                .bind(actor)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
                let details = format!(
                    "{{\"person\":{},\"version\":{},\"sha256\":\"{sha256}\",\"channel\":\"{}\"}}",
                    json_string(masked),
                    json_string(&version),
                    channel.as_str()
                );
                audit(&mut tx, actor, "letter.sign", &format!("person {masked}"), details).await?;
                tx.commit().await?;
                Ok(Signature {
                    id,
                    letter_version: version,
                    sha256: sha256.to_owned(),
                    channel: channel.as_str().to_owned(),
                    signed_at: now,
                })
            }

            pub(super) async fn signed_current(pool: &Pool, key: &[u8]) -> Result<bool, StoreError> {
                let row = sqlx::query(
                    "SELECT 1 FROM commitment_signatures s WHERE s.person_key = $1 AND s.letter_id = \
                     (SELECT MAX(id) FROM commitment_letters)",
                )
                .bind(key.to_vec())
                .fetch_optional(pool)
                .await?;
                Ok(row.is_some())
            }

            pub(super) async fn prefill(
                pool: &Pool,
                key: &[u8],
                masked: &str,
                actor: &str,
            ) -> Result<Prefill, StoreError> {
                let mut tx = begin_write(pool).await?;
                let details = format!("{{\"person\":{},\"purpose\":\"application prefill\"}}", json_string(masked));
                audit(&mut tx, actor, "person.read", &format!("person {masked}"), details).await?;
                tx.commit().await?;
                let mut connection = pool.acquire().await?;
                let mut spells = Vec::new();
                for row in sqlx::query(
                    "SELECT category, valid_from, valid_to, source FROM spells WHERE person_key = $1 \
                     AND superseded_by IS NULL ORDER BY valid_from, id",
                )
                .bind(key.to_vec())
                .fetch_all(&mut *connection)
                .await?
                {
                    spells.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?));
                }
                let letter = sqlx::query("SELECT id, version, body_sha256 FROM commitment_letters ORDER BY id DESC LIMIT 1")
                    .fetch_optional(&mut *connection)
                    .await?;
                let (letter, signed_current_letter) = match letter {
                    Some(row) => {
                        let id: i64 = row.try_get(0)?;
                        let signed = sqlx::query(
                            "SELECT 1 FROM commitment_signatures WHERE person_key = $1 AND letter_id = $2",
                        )
                        .bind(key.to_vec())
                        .bind(id)
                        .fetch_optional(&mut *connection)
                        .await?
                        .is_some();
                        (Some((row.try_get(1)?, hex(&row.try_get::<Vec<u8>, _>(2)?))), signed)
                    }
                    None => (None, false),
                };
                let bank_account = sqlx::query(
                    "SELECT holder_name, bank, account_masked FROM bank_accounts WHERE person_key = $1 \
                     ORDER BY id DESC LIMIT 1",
                )
                .bind(key.to_vec())
                .fetch_optional(&mut *connection)
                .await?
                .map(|row| -> Result<_, StoreError> { Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?)) })
                .transpose()?;
                let mut bills = Vec::new();
                for row in sqlx::query(
                    "SELECT i.invoice_no, i.hospital, i.service_date, i.total, i.channel, d.outcome, d.amount \
                     FROM invoices i JOIN decisions d ON d.invoice_no = i.invoice_no AND d.kind = 'decision' \
                     WHERE i.person_key = $1 ORDER BY i.service_date DESC, i.invoice_no",
                )
                .bind(key.to_vec())
                .fetch_all(&mut *connection)
                .await?
                {
                    bills.push(KnownBill {
                        invoice_no: row.try_get(0)?,
                        hospital: row.try_get(1)?,
                        service_date: row.try_get(2)?,
                        total: Fen::from_fen(row.try_get(3)?),
                        channel: row.try_get(4)?,
                        outcome: row.try_get(5)?,
                        amount: Fen::from_fen(row.try_get(6)?),
                    });
                }
                drop(connection);
                let applications = summaries(pool, Some(key), None).await?;
                Ok(Prefill {
                    person_masked: masked.to_owned(),
                    spells,
                    letter,
                    signed_current_letter,
                    bank_account,
                    bills,
                    applications,
                })
            }

            /// Stores a submission with its checks, and decides it at once
            /// when nothing was found. Returns its id.
            pub(super) async fn submit(
                pool: &Pool,
                cache: &PolicyCache,
                submission: &Submission<'_>,
            ) -> Result<i64, ApplicationError> {
                let mut tx = begin_write(pool).await?;
                let Some((letter, version, _)) = current_letter_in(&mut tx).await? else {
                    return Err(ApplicationError::NoLetter);
                };
                let signature = sqlx::query(
                    "SELECT id FROM commitment_signatures WHERE person_key = $1 AND letter_id = $2 \
                     ORDER BY id DESC LIMIT 1",
                )
                .bind(submission.key.clone())
                .bind(letter)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(signature) = signature else {
                    return Err(ApplicationError::NotSigned { version });
                };
                let signature: i64 = signature.try_get(0)?;
                let Some((_, policy)) = policy_in(&mut tx, cache).await? else {
                    return Err(ApplicationError::NoPolicy);
                };

                // The person's current spells.
                let mut spells: Vec<Spell> = Vec::new();
                for row in sqlx::query(
                    "SELECT person_key, category, valid_from, valid_to, source FROM spells \
                     WHERE superseded_by IS NULL AND person_key = $1 ORDER BY id",
                )
                .bind(submission.key.clone())
                .fetch_all(&mut *tx)
                .await?
                {
                    spells.push(spell_of(&row, submission.person)?);
                }

                // Every check on every bill.
                let mut checks: Vec<(u32, &'static str, bool, String)> = Vec::new();
                let mut excluded: Vec<bool> = Vec::with_capacity(submission.bills.len());
                for (index, bill) in submission.bills.iter().enumerate() {
                    let line = bill.line;
                    let mut check = |name: &'static str, passed: bool, detail: String| {
                        checks.push((line, name, passed, detail));
                        passed
                    };
                    let [total, fund_paid, in_scope, out_of_scope] = bill.amounts;
                    let sum = fund_paid + in_scope + out_of_scope;
                    let adds_up = check(
                        "amounts_add_up",
                        bill.invoice.is_some(),
                        if bill.invoice.is_some() {
                            format!("fund_paid + in_scope_self_pay + out_of_scope_self_pay = total = {}", Fen::from_fen(total))
                        } else {
                            format!(
                                "fund_paid + in_scope_self_pay + out_of_scope_self_pay = {}, but total is {}",
                                Fen::from_fen(sum),
                                Fen::from_fen(total)
                            )
                        },
                    );
                    let known_visit = policy.pool_of_visit_type(&bill.visit_type).is_some();
                    let known_visit = check(
                        "visit_type_known",
                        known_visit,
                        if known_visit {
                            format!("visit type {} is in the policy", bill.visit_type)
                        } else {
                            format!("the policy does not know the visit type {}", bill.visit_type)
                        },
                    );
                    let stored = sqlx::query("SELECT channel, received_at FROM invoices WHERE invoice_no = $1")
                        .bind(&bill.invoice_no)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let not_decided = match stored {
                        Some(row) => {
                            let channel: String = row.try_get(0)?;
                            let at: String = row.try_get(1)?;
                            let how = match channel.as_str() {
                                "feed" => "in the insurance feed",
                                "realtime" => "in real time at the hospital",
                                _ => "in an earlier application",
                            };
                            check("not_decided", false, format!("{} was already decided {how} ({at})", bill.invoice_no))
                        }
                        None => check("not_decided", true, format!("no bill {} is stored", bill.invoice_no)),
                    };
                    let earlier = submission.bills[..index]
                        .iter()
                        .find(|other| other.invoice_no == bill.invoice_no);
                    let applied = sqlx::query(
                        "SELECT application_id FROM application_bills WHERE invoice_no = $1 \
                         AND status IN ('pending', 'decided') LIMIT 1",
                    )
                    .bind(&bill.invoice_no)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let not_applied = match (earlier, applied) {
                        (Some(other), _) => check(
                            "not_applied",
                            false,
                            format!("line {} of this application has the same number", other.line),
                        ),
                        (None, Some(row)) => {
                            let other: i64 = row.try_get(0)?;
                            check("not_applied", false, format!("{} is in application {other} already", bill.invoice_no))
                        }
                        (None, None) => check("not_applied", true, "in no other application".into()),
                    };
                    // Same person, hospital, service date and total under
                    // another number: in the store, in other applications,
                    // or earlier in this one.
                    let mut similar: Vec<String> = Vec::new();
                    for row in sqlx::query(
                        "SELECT invoice_no FROM invoices WHERE person_key = $1 AND hospital = $2 \
                         AND service_date = $3 AND total = $4 AND invoice_no <> $5 \
                         UNION SELECT b.invoice_no FROM application_bills b JOIN applications a ON a.id = b.application_id \
                         WHERE a.person_key = $1 AND b.hospital = $2 AND b.service_date = $3 AND b.total = $4 \
                         AND b.invoice_no <> $5 AND b.status IN ('pending', 'decided') ORDER BY 1 LIMIT 10",
                    )
                    .bind(submission.key.clone())
                    .bind(&bill.hospital)
                    .bind(bill.service_date.to_string())
                    .bind(total)
                    .bind(&bill.invoice_no)
                    .fetch_all(&mut *tx)
                    .await?
                    {
                        similar.push(row.try_get(0)?);
                    }
                    for other in &submission.bills[..index] {
                        if other.invoice_no != bill.invoice_no
                            && other.hospital == bill.hospital
                            && other.service_date == bill.service_date
                            && other.amounts[0] == total
                        {
                            similar.push(format!("{} (line {})", other.invoice_no, other.line));
                        }
                    }
                    check(
                        "no_suspected_duplicate",
                        similar.is_empty(),
                        if similar.is_empty() {
                            "no other bill of the same hospital, day and total".into()
                        } else {
                            format!("same hospital, service date and total as {}", similar.join(", "))
                        },
                    );
                    let category = category_on(&policy, &spells, bill.service_date);
                    check(
                        "eligible",
                        category.is_some(),
                        match category {
                            Some(category) => {
                                let category = policy.category(category);
                                format!(
                                    "{} {} on {}",
                                    category.code,
                                    category.name.as_deref().unwrap_or(""),
                                    bill.service_date
                                )
                            }
                            None => format!("no category on {}", bill.service_date),
                        },
                    );
                    let days = i64::from(submission.today.days_since_epoch())
                        - i64::from(bill.service_date.days_since_epoch());
                    let within = days <= i64::from(submission.deadline_days);
                    check(
                        "within_deadline",
                        within,
                        if days < 0 {
                            format!("the service date {} is after the day of submission", bill.service_date)
                        } else {
                            format!("{days} days after the service date; the deadline is {} days", submission.deadline_days)
                        },
                    );
                    excluded.push(!(adds_up && known_visit && not_decided && not_applied));
                }
                let findings = checks.iter().filter(|check| !check.2).count();
                let now = now_text();
                let state = if findings == 0 { ApplicationState::Decided } else { ApplicationState::NeedsReview };

                // The person, the application, its bills, its checks.
                let person = PersonRow {
                    key: submission.key.clone(),
                    encrypted: submission.encrypted.clone(),
                    masked: submission.masked.clone(),
                };
                sqlx::query(
                    "INSERT INTO persons (person_key, resident_id_encrypted, resident_id_masked, created_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (person_key) DO NOTHING",
                )
                .bind(person.key.clone())
                .bind(person.encrypted.clone())
                .bind(person.masked.clone())
                .bind(&now)
                .execute(&mut *tx)
                .await?;
                let id: i64 = sqlx::query(
                    "INSERT INTO applications (person_key, signature_id, channel, entered_by, submitted_at, state, \
                     request_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                )
                .bind(person.key.clone())
                .bind(signature)
                .bind(submission.channel.as_str())
                .bind(submission.entered_by)
                .bind(&now)
                .bind(state.as_str())
                .bind(submission.request_sha256.clone())
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
                for (bill, excluded) in submission.bills.iter().zip(&excluded) {
                    let (media_type, scan, scan_sha256) = match &bill.scan {
                        Some((media_type, bytes, sha)) => (Some(*media_type), Some(bytes.clone()), Some(sha.clone())),
                        None => (None, None, None),
                    };
                    sqlx::query(
                        "INSERT INTO application_bills (application_id, line, invoice_no, hospital, visit_type, \
                         service_date, settled_at, total, fund_paid, in_scope_self_pay, out_of_scope_self_pay, \
                         scan_media_type, scan, scan_sha256, status) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                    )
                    .bind(id)
                    .bind(i64::from(bill.line))
                    .bind(&bill.invoice_no)
                    .bind(&bill.hospital)
                    .bind(&bill.visit_type)
                    .bind(bill.service_date.to_string())
                    .bind(&bill.settled_at)
                    .bind(bill.amounts[0])
                    .bind(bill.amounts[1])
                    .bind(bill.amounts[2])
                    .bind(bill.amounts[3])
                    .bind(media_type)
                    .bind(scan)
                    .bind(scan_sha256)
                    .bind(if *excluded { "excluded" } else { "pending" })
                    .execute(&mut *tx)
                    .await?;
                }
                for (line, name, passed, detail) in &checks {
                    sqlx::query(
                        "INSERT INTO application_checks (application_id, line, name, passed, detail) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(id)
                    .bind(i64::from(*line))
                    .bind(*name)
                    .bind(i64::from(*passed))
                    .bind(detail)
                    .execute(&mut *tx)
                    .await?;
                }
                event(&mut tx, id, "submitted", submission.entered_by, None).await?;
                let details = format!(
                    "{{\"person\":{},\"channel\":\"{}\",\"bills\":{},\"findings\":{findings},\"request_sha256\":\"{}\"}}",
                    json_string(&submission.masked),
                    submission.channel.as_str(),
                    submission.bills.len(),
                    hex(&submission.request_sha256)
                );
                audit(&mut tx, submission.entered_by, "application.submit", &format!("application {id}"), details)
                    .await?;
                if findings == 0 {
                    event(&mut tx, id, "accepted", "smart-acceptance", Some("every check passed")).await?;
                    let bills: Vec<(u32, jiuzhu_core::Invoice)> = submission
                        .bills
                        .iter()
                        .filter_map(|bill| Some((bill.line, bill.invoice.clone()?)))
                        .collect();
                    decide(&mut tx, cache, id, &person, &bills, "smart-acceptance").await?;
                } else {
                    let reason = format!("{findings} finding(s) for a reviewer");
                    event(&mut tx, id, "needs_review", "smart-acceptance", Some(&reason)).await?;
                }
                tx.commit().await?;
                Ok(id)
            }

            async fn event(
                tx: &mut Tx<'_>,
                id: i64,
                state: &str,
                actor: &str,
                reason: Option<&str>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO application_events (application_id, state, at, actor, reason) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(state)
                .bind(now_text())
                .bind(actor)
                .bind(reason)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// Decides the bills through the engine (channel
            /// `application`), marks each decided, and records the state
            /// `decided`.
            async fn decide(
                tx: &mut Tx<'_>,
                cache: &PolicyCache,
                id: i64,
                person: &PersonRow,
                bills: &[(u32, jiuzhu_core::Invoice)],
                actor: &str,
            ) -> Result<(), ApplicationError> {
                let at = now_text();
                let mut requests: Vec<SettleRequest> = bills
                    .iter()
                    .map(|(_, invoice)| SettleRequest {
                        invoice: invoice.clone(),
                        person: person.clone(),
                        digest: jiuzhu_formats::json::canonical_request_digest(invoice),
                        actor: format!("application:{id}:{actor}"),
                        at: at.clone(),
                        channel: Channel::Application,
                    })
                    .collect();
                // Canonical order, as every other channel decides.
                requests.sort_by(|a, b| {
                    jiuzhu_core::canonical_cmp(
                        (&a.invoice.settled_at, &a.invoice.invoice_no, 0),
                        (&b.invoice.settled_at, &b.invoice.invoice_no, 0),
                    )
                });
                let entry = |rows: &[Decided<'_>]| {
                    let amount: i64 = rows.iter().map(|row| row.decision.amount.fen()).sum();
                    let numbers: Vec<String> =
                        rows.iter().map(|row| json_string(row.request.invoice.invoice_no.as_str())).collect();
                    AuditRecord {
                        actor: actor.to_owned(),
                        action: "application.decide",
                        subject: format!("application {id}"),
                        details: format!(
                            "{{\"invoices\":[{}],\"amount\":\"{}\",\"policy_id\":{}}}",
                            numbers.join(","),
                            Fen::from_fen(amount),
                            rows.first().map_or(0, |row| row.policy_id)
                        ),
                    }
                };
                let answers = decide_in(tx, cache, &requests, &entry).await?;
                let mut lines: HashMap<&str, u32> = HashMap::new();
                for (line, invoice) in bills {
                    lines.insert(invoice.invoice_no.as_str(), *line);
                }
                let mut granted = 0i64;
                let mut excluded: Vec<String> = Vec::new();
                for (request, answer) in requests.iter().zip(answers) {
                    let number = request.invoice.invoice_no.as_str();
                    let line = lines[number];
                    let status = match answer {
                        FeedAnswer::Decided { amount, .. } => {
                            granted += amount.fen();
                            "decided"
                        }
                        FeedAnswer::NoPolicy => return Err(ApplicationError::NoPolicy),
                        // Stored meanwhile by another channel, or a visit
                        // type a new policy no longer maps.
                        FeedAnswer::AlreadyDecided | FeedAnswer::Conflict => {
                            excluded.push(format!("{number} (stored meanwhile by another channel)"));
                            "excluded"
                        }
                        FeedAnswer::UnknownVisitType => {
                            excluded.push(format!("{number} (the policy in force does not map its visit type)"));
                            "excluded"
                        }
                    };
                    sqlx::query("UPDATE application_bills SET status = $1 WHERE application_id = $2 AND line = $3")
                        .bind(status)
                        .bind(id)
                        .bind(i64::from(line))
                        .execute(&mut **tx)
                        .await?;
                }
                sqlx::query("UPDATE applications SET state = 'decided' WHERE id = $1")
                    .bind(id)
                    .execute(&mut **tx)
                    .await?;
                let mut reason = format!(
                    "{} bill(s) decided, {} granted",
                    requests.len() - excluded.len(),
                    Fen::from_fen(granted)
                );
                if !excluded.is_empty() {
                    reason.push_str(&format!("; not decided: {}", excluded.join(", ")));
                }
                event(tx, id, "decided", actor, Some(&reason)).await?;
                Ok(())
            }

            pub(super) async fn review(
                pool: &Pool,
                cache: &PolicyCache,
                id: i64,
                verdict: Verdict,
                reason: &str,
                actor: &str,
                decrypt: &(dyn Fn(&[u8]) -> Result<ResidentId, StoreError> + Sync),
            ) -> Result<(), ApplicationError> {
                let mut tx = begin_write(pool).await?;
                let row = sqlx::query(
                    "SELECT a.state, a.entered_by, a.person_key, p.resident_id_encrypted, p.resident_id_masked \
                     FROM applications a JOIN persons p ON p.person_key = a.person_key WHERE a.id = $1",
                )
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(ApplicationError::NotFound(id))?;
                let state = ApplicationState::parse(&row.try_get::<String, _>(0)?)?;
                if state != ApplicationState::NeedsReview {
                    return Err(ApplicationError::NotInReview { id, state: state.as_str() });
                }
                let entered_by: String = row.try_get(1)?;
                if entered_by == actor {
                    return Err(ApplicationError::SelfReview { application: id, actor: actor.to_owned() });
                }
                let person = PersonRow { key: row.try_get(2)?, encrypted: row.try_get(3)?, masked: row.try_get(4)? };
                let details = |verdict: &str| format!("{{\"verdict\":\"{verdict}\",\"reason\":{}}}", json_string(reason));
                match verdict {
                    Verdict::Reject => {
                        sqlx::query(
                            "UPDATE application_bills SET status = 'rejected' WHERE application_id = $1 \
                             AND status = 'pending'",
                        )
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query("UPDATE applications SET state = 'rejected' WHERE id = $1")
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        event(&mut tx, id, "rejected", actor, Some(reason)).await?;
                        audit(&mut tx, actor, "application.review", &format!("application {id}"), details("reject"))
                            .await?;
                    }
                    Verdict::Approve => {
                        let resident = decrypt(&person.encrypted)?;
                        let mut bills = Vec::new();
                        for row in sqlx::query(
                            "SELECT line, invoice_no, hospital, visit_type, service_date, settled_at, total, fund_paid, \
                             in_scope_self_pay, out_of_scope_self_pay FROM application_bills \
                             WHERE application_id = $1 AND status = 'pending' ORDER BY line",
                        )
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?
                        {
                            let damaged = |what: &str| StoreError::Damaged(format!("application {id}: a bill's {what}"));
                            let line: i64 = row.try_get(0)?;
                            let amounts = jiuzhu_core::BillAmounts::new(
                                Fen::from_fen(row.try_get(6)?),
                                Fen::from_fen(row.try_get(7)?),
                                Fen::from_fen(row.try_get(8)?),
                                Fen::from_fen(row.try_get(9)?),
                            )
                            .map_err(|_| damaged("amounts"))?;
                            let invoice = jiuzhu_core::Invoice {
                                invoice_no: jiuzhu_core::InvoiceNo::parse(&row.try_get::<String, _>(1)?)
                                    .map_err(|_| damaged("number"))?,
                                person: resident,
                                hospital: jiuzhu_core::Hospital::parse(&row.try_get::<String, _>(2)?)
                                    .map_err(|_| damaged("hospital"))?,
                                visit_type: row.try_get(3)?,
                                service_date: Date::parse(&row.try_get::<String, _>(4)?)
                                    .map_err(|_| damaged("service date"))?,
                                settled_at: jiuzhu_core::Timestamp::parse(&row.try_get::<String, _>(5)?)
                                    .map_err(|_| damaged("settlement time"))?,
                                amounts,
                            };
                            bills.push((line as u32, invoice));
                        }
                        if bills.is_empty() {
                            return Err(ApplicationError::NothingToDecide(id));
                        }
                        sqlx::query("UPDATE applications SET state = 'approved' WHERE id = $1")
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                        event(&mut tx, id, "approved", actor, Some(reason)).await?;
                        audit(&mut tx, actor, "application.review", &format!("application {id}"), details("approve"))
                            .await?;
                        decide(&mut tx, cache, id, &person, &bills, actor).await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            pub(super) async fn person_key(pool: &Pool, id: i64) -> Result<Vec<u8>, ApplicationError> {
                let row = sqlx::query("SELECT person_key FROM applications WHERE id = $1")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?
                    .ok_or(ApplicationError::NotFound(id))?;
                Ok(row.try_get(0)?)
            }

            pub(super) async fn summaries(
                pool: &Pool,
                person: Option<&[u8]>,
                state: Option<&str>,
            ) -> Result<Vec<ApplicationSummary>, StoreError> {
                macro_rules! summary_sql {
                    ($filter:literal, $order:literal) => {
                        concat!(
                            "SELECT a.id, p.resident_id_masked, a.state, a.channel, a.entered_by, a.submitted_at, \
                             (SELECT COUNT(*) FROM application_bills b WHERE b.application_id = a.id), \
                             (SELECT COUNT(*) FROM application_checks c WHERE c.application_id = a.id AND c.passed = 0), \
                             (SELECT CAST(COALESCE(SUM(b.in_scope_self_pay), 0) AS BIGINT) FROM application_bills b \
                             WHERE b.application_id = a.id) \
                             FROM applications a JOIN persons p ON p.person_key = a.person_key WHERE ",
                            $filter,
                            " ORDER BY ",
                            $order
                        )
                    };
                }
                let query = match (person, state) {
                    (Some(person), _) => sqlx::query(summary_sql!("a.person_key = $1", "a.id DESC")).bind(person.to_vec()),
                    (None, Some(state)) => sqlx::query(summary_sql!("a.state = $1", "a.id")).bind(state.to_owned()),
                    (None, None) => sqlx::query(summary_sql!("1 = 1", "a.id DESC")),
                };
                let mut summaries = Vec::new();
                for row in query.fetch_all(pool).await? {
                    summaries.push(summary_of(&row)?);
                }
                Ok(summaries)
            }

            fn summary_of(row: &<$Db as sqlx::Database>::Row) -> Result<ApplicationSummary, StoreError> {
                let bills: i64 = row.try_get(6)?;
                let findings: i64 = row.try_get(7)?;
                let in_scope: i64 = row.try_get(8)?;
                Ok(ApplicationSummary {
                    id: row.try_get(0)?,
                    person_masked: row.try_get(1)?,
                    state: ApplicationState::parse(&row.try_get::<String, _>(2)?)?,
                    channel: row.try_get(3)?,
                    entered_by: row.try_get(4)?,
                    submitted_at: row.try_get(5)?,
                    bills: bills as u64,
                    findings: findings as u64,
                    in_scope_self_pay: Fen::from_fen(in_scope),
                })
            }

            pub(super) async fn view(pool: &Pool, id: i64) -> Result<Option<ApplicationView>, StoreError> {
                let mut connection = pool.acquire().await?;
                let row = sqlx::query(
                    "SELECT a.id, p.resident_id_masked, a.state, a.channel, a.entered_by, a.submitted_at, \
                     (SELECT COUNT(*) FROM application_bills b WHERE b.application_id = a.id), \
                     (SELECT COUNT(*) FROM application_checks c WHERE c.application_id = a.id AND c.passed = 0), \
                     (SELECT CAST(COALESCE(SUM(b.in_scope_self_pay), 0) AS BIGINT) FROM application_bills b WHERE b.application_id = a.id) \
                     FROM applications a JOIN persons p ON p.person_key = a.person_key WHERE a.id = $1",
                )
                .bind(id)
                .fetch_optional(&mut *connection)
                .await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let summary = summary_of(&row)?;
                let mut bills = Vec::new();
                for row in sqlx::query(
                    "SELECT b.line, b.invoice_no, b.hospital, b.visit_type, b.service_date, b.settled_at, b.total, \
                     b.fund_paid, b.in_scope_self_pay, b.out_of_scope_self_pay, b.scan_media_type, \
                     LENGTH(b.scan), b.scan_sha256, b.status, d.outcome, d.amount \
                     FROM application_bills b LEFT JOIN decisions d ON d.invoice_no = b.invoice_no \
                     AND d.kind = 'decision' AND b.status = 'decided' \
                     WHERE b.application_id = $1 ORDER BY b.line",
                )
                .bind(id)
                .fetch_all(&mut *connection)
                .await?
                {
                    let line: i64 = row.try_get(0)?;
                    let media_type: Option<String> = row.try_get(10)?;
                    let length: Option<i64> = row.try_get::<Option<i64>, _>(11).or_else(|_| {
                        row.try_get::<Option<i32>, _>(11).map(|length| length.map(i64::from))
                    })?;
                    let sha: Option<Vec<u8>> = row.try_get(12)?;
                    let outcome: Option<String> = row.try_get(14)?;
                    let amount: Option<i64> = row.try_get(15)?;
                    bills.push(ApplicationBillView {
                        line: line as u32,
                        invoice_no: row.try_get(1)?,
                        hospital: row.try_get(2)?,
                        visit_type: row.try_get(3)?,
                        service_date: row.try_get(4)?,
                        settled_at: row.try_get(5)?,
                        amounts: [
                            Fen::from_fen(row.try_get(6)?),
                            Fen::from_fen(row.try_get(7)?),
                            Fen::from_fen(row.try_get(8)?),
                            Fen::from_fen(row.try_get(9)?),
                        ],
                        scan: match (media_type, length, sha) {
                            (Some(media_type), Some(length), Some(sha)) => Some((media_type, length as u64, hex(&sha))),
                            _ => None,
                        },
                        status: row.try_get(13)?,
                        decision: outcome.zip(amount.map(Fen::from_fen)),
                    });
                }
                let mut checks = Vec::new();
                for row in sqlx::query(
                    "SELECT line, name, passed, detail FROM application_checks WHERE application_id = $1 ORDER BY line, name",
                )
                .bind(id)
                .fetch_all(&mut *connection)
                .await?
                {
                    let line: i64 = row.try_get(0)?;
                    let passed: i64 = row.try_get(2)?;
                    checks.push(CheckResult {
                        line: line as u32,
                        name: row.try_get(1)?,
                        passed: passed == 1,
                        detail: row.try_get(3)?,
                    });
                }
                let mut events = Vec::new();
                for row in sqlx::query(
                    "SELECT state, at, actor, reason FROM application_events WHERE application_id = $1 ORDER BY id",
                )
                .bind(id)
                .fetch_all(&mut *connection)
                .await?
                {
                    events.push(ApplicationEvent {
                        state: row.try_get(0)?,
                        at: row.try_get(1)?,
                        actor: row.try_get(2)?,
                        reason: row.try_get(3)?,
                    });
                }
                Ok(Some(ApplicationView { summary, bills, checks, events }))
            }

            /// The person's spells, unassisted bills and bills to apply
            /// for again; with `only`, the bills to apply for again of
            /// that number alone (with their scans) and nothing else.
            pub(super) async fn held_bills(pool: &Pool, key: &[u8], only: Option<&str>) -> Result<HeldBills, StoreError> {
                let mut connection = pool.acquire().await?;
                let mut held = HeldBills::default();
                if only.is_none() {
                    for row in sqlx::query(
                        "SELECT category, valid_from, valid_to FROM spells WHERE person_key = $1 \
                         AND superseded_by IS NULL ORDER BY valid_from, id",
                    )
                    .bind(key.to_vec())
                    .fetch_all(&mut *connection)
                    .await?
                    {
                        held.spells.push((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?));
                    }
                    for row in sqlx::query(
                        "SELECT i.invoice_no, i.hospital, i.visit_type, i.service_date, i.total, i.in_scope_self_pay, \
                         i.channel, d.outcome, d.amount, d.decided_at FROM invoices i \
                         JOIN decisions d ON d.invoice_no = i.invoice_no AND d.kind = 'decision' \
                         WHERE i.person_key = $1 AND d.person_key = $1 AND i.channel IN ('realtime', 'feed') \
                         AND (d.outcome NOT IN ('assisted', 'capped') OR d.amount = 0) \
                         AND NOT EXISTS (SELECT 1 FROM decisions r WHERE r.invoice_no = i.invoice_no \
                         AND r.kind = 'reversal') \
                         AND NOT EXISTS (SELECT 1 FROM application_bills b WHERE b.invoice_no = i.invoice_no \
                         AND b.status IN ('pending', 'decided')) \
                         ORDER BY i.service_date DESC, i.invoice_no",
                    )
                    .bind(key.to_vec())
                    .fetch_all(&mut *connection)
                    .await?
                    {
                        held.unassisted.push(UnassistedBill {
                            invoice_no: row.try_get(0)?,
                            hospital: row.try_get(1)?,
                            visit_type: row.try_get(2)?,
                            service_date: row.try_get(3)?,
                            total: Fen::from_fen(row.try_get(4)?),
                            in_scope_self_pay: Fen::from_fen(row.try_get(5)?),
                            channel: row.try_get(6)?,
                            outcome: row.try_get(7)?,
                            amount: Fen::from_fen(row.try_get(8)?),
                            decided_at: row.try_get(9)?,
                        });
                    }
                }
                // The newest rejected line of each number first; the scan
                // is read only for the one bill asked for.
                let scan = if only.is_some() { "b.scan_media_type, b.scan" } else { "NULL, NULL" };
                let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT b.invoice_no, b.hospital, b.visit_type, b.service_date, b.settled_at, b.total, b.fund_paid, \
                     b.in_scope_self_pay, b.out_of_scope_self_pay, b.application_id, {scan} \
                     FROM application_bills b JOIN applications a ON a.id = b.application_id \
                     WHERE a.person_key = $1 AND b.status = 'rejected' AND ($2 = '' OR b.invoice_no = $2) \
                     AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.invoice_no = b.invoice_no) \
                     AND NOT EXISTS (SELECT 1 FROM application_bills c WHERE c.invoice_no = b.invoice_no \
                     AND c.status IN ('pending', 'decided')) \
                     ORDER BY b.service_date DESC, b.invoice_no, b.application_id DESC, b.line DESC"
                )))
                .bind(key.to_vec())
                .bind(only.unwrap_or(""))
                .fetch_all(&mut *connection)
                .await?;
                for row in rows {
                    let invoice_no: String = row.try_get(0)?;
                    if held.reapplicable.last().is_some_and(|last| last.invoice_no == invoice_no) {
                        continue;
                    }
                    let media_type: Option<String> = row.try_get(10)?;
                    let bytes: Option<Vec<u8>> = row.try_get(11)?;
                    held.reapplicable.push(HeldBill {
                        invoice_no,
                        hospital: row.try_get(1)?,
                        visit_type: row.try_get(2)?,
                        service_date: row.try_get(3)?,
                        settled_at: row.try_get(4)?,
                        amounts: [
                            Fen::from_fen(row.try_get(5)?),
                            Fen::from_fen(row.try_get(6)?),
                            Fen::from_fen(row.try_get(7)?),
                            Fen::from_fen(row.try_get(8)?),
                        ],
                        application: row.try_get(9)?,
                        scan: media_type.zip(bytes),
                    });
                }
                Ok(held)
            }

            pub(super) async fn scan(pool: &Pool, id: i64, line: u32) -> Result<Option<(String, Vec<u8>)>, StoreError> {
                let row = sqlx::query(
                    "SELECT scan_media_type, scan FROM application_bills WHERE application_id = $1 AND line = $2 \
                     AND scan IS NOT NULL",
                )
                .bind(id)
                .bind(i64::from(line))
                .fetch_optional(pool)
                .await?;
                match row {
                    Some(row) => Ok(Some((row.try_get(0)?, row.try_get(1)?))),
                    None => Ok(None),
                }
            }
        }
    };
}

applications_backend!(sqlite_applications, sqlite, sqlx::SqlitePool, sqlx::Sqlite);
applications_backend!(postgres_applications, postgres, sqlx::PgPool, sqlx::Postgres);
