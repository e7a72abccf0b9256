//! Jiuzhu's domain, pure: money, identities, dates, policy, spells and
//! invoices, and the one assistance engine that decides every fen
//! (`shared/spec/calculation.md`). No IO, no async, no database: the store,
//! the server and the command line call in here.

pub mod batch;
pub mod clearing;
pub mod engine;
mod explain;
pub mod ids;
pub mod money;
pub mod policy;
pub mod records;
pub mod time;

pub use batch::{
    canonical_cmp, canonical_order, Batch, BatchInvoice, BatchRun, CompactDecision, Summary, SummaryRow,
    UnknownVisitType,
};
pub use clearing::{Difference, Line, Period, PeriodError};
pub use engine::{
    category_on, decide, decide_invoice, Claim, Counters, Decision, Outcome, SpellBook, UnknownCategory,
};
pub use ids::{InvoiceNo, InvoiceNoError, ResidentId, ResidentIdError};
pub use money::{BasisPoints, Fen, MoneyError, MoneyErrorKind, RatioError};
pub use policy::{
    Category, CategoryDraft, CategoryId, Policy, PolicyDraft, PolicyProblem, PoolId, PoolRule, Rule,
    RuleDraft, Version, VersionDraft, VersionId,
};
pub use records::{BillAmounts, BillAmountsError, Hospital, HospitalError, Invoice, Spell, SpellError};
pub use time::{Date, DateError, Timestamp, TimestampError, TimestampErrorKind};
