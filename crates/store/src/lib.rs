//! Jiuzhu's store: the database behind one set of domain-level operations
//! (settle, import_spells, run_clearing, …) over two backends, SQLite and
//! PostgreSQL, each with its own migrations (`shared/design.md`).
//!
//! For now it holds what those backends will share, with no database
//! dependency:
//!
//! - [`crypto`]: personal data protection. Resident ID numbers and bank
//!   accounts are encrypted with AES-256-GCM and found through an
//!   HMAC-SHA-256 blind index, under [`DataKeys`] that come from
//!   configuration, never from the database; hospital API keys are kept only
//!   as their SHA-256 hash.
//! - [`audit`]: the audit log's hash chain, `hash = SHA-256(previous hash ‖
//!   entry)`, and [`verify_chain`], which names the first entry that was
//!   changed or removed (`jiuzhu audit verify`).
//! - [`spell_history`]: how a department's file of spells becomes new
//!   versions of the stored spells (never updated in place), the import's
//!   report (救助新增) and the marks for recomputation.
//! - [`database`]: the [`Store`] itself. Real-time settlements go through
//!   one writer task with group commit; the insurance feed
//!   ([`Store::import_invoices`], 免申即享) decides its bills in canonical
//!   order through the same decision path, in chunks of one transaction
//!   each. Each decision granting something and each new recipient is
//!   announced through the outbox ([`Store::dispatch_notifications`]).
//!   Departments push their files and pull back the decisions about the
//!   persons they reported with keys of their own
//!   ([`Store::decisions_since`]).
//! - [`notify`]: the notifications' texts, the [`Sender`] a dispatch hands
//!   them to, and the built-in [`LogFileSender`].

pub mod audit;
pub mod crypto;
pub mod database;
pub mod notify;
pub mod spell_history;

pub use audit::{verify_chain, AuditEntry, BreakReason, ChainBreak, ChainSummary, GENESIS};
pub use crypto::{ApiKey, ApiKeyHash, CryptoError, DataKeys, KeyTextError, Purpose};
pub use database::console::{
    BatchLineView, ClearingLineView, ClearingRun, KeyListing, KeyOwner, PolicyVersion, StaffListing, WhatIf,
    WhatIfCategory, WhatIfError,
};
pub use database::{
    check_department, decision_row_line, masked_account, AccountsLoaded, BatchMade, BatchSummary,
    CappedInvoice, ClearingError, ClearingReport, DecisionKind, DecisionPage, DecisionRow, DifferenceRow,
    DisburseError, DispatchOptions, DispatchReport, FeedDuplicate, FeedError, FeedOptions, FeedReport,
    NotificationStats, PolicyLoad, SettleError, Settled, SharedDecision, Store, StoreError,
    SuspectedDuplicate, WriteStats, DECISIONS_PAGE_DEFAULT, DECISIONS_PAGE_MAX, FEED_CHUNK_INVOICES,
    INSURANCE_SETTLEMENT_DEPARTMENT, KNOWN_KEY_SECONDS, MAX_FEED_CHUNK_INVOICES, SQLITE_CACHE_KIB,
};
pub use database::{
    check_phone, CitizenBill, CitizenDetails, CitizenPayment, CodeRequest, Dashboard, LoginChannel,
    NewDetails, NewSession, StaffError, WebSession, CODE_SECONDS, LONGEST_DISABLE_REASON, SHORTEST_PASSWORD,
};
pub use database::{
    scan_base64, AcceptanceSettings, ApplicationBillView, ApplicationError, ApplicationEvent,
    ApplicationState, ApplicationSummary, ApplicationView, ApplyChannel, CheckResult, HeldBill, HeldBills,
    KnownBill, Letter, Prefill, RecoveryLine, RecoveryStatus, RecoveryVerdict, Role, ScanContent, Signature,
    StaffUser, UnassistedBill, Verdict,
};
pub use notify::{message as notification_message, LogFileSender, Notification, NotificationKind, Sender};
pub use spell_history::{AlreadyImported, PendingRecomputation, SpellFile, SpellImport, StoredSpell};
