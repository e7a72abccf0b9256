//! Notifications: each automatic assistance and each new recipient gets a
//! message in plain Chinese: what was paid, for which bill, where to see it
//! ([`assisted_text`]); or which category from when, and that nothing needs
//! to be done ([`new_recipient_text`]).
//!
//! They are written to the `outbox` table in the same transaction as what
//! they announce, so none is lost and a refused write announces nothing:
//!
//! - a decision granting more than 0, by real-time settlement (the group
//!   commit writes one multi-row insert per batch) or by the insurance feed
//!   (one per chunk): one notification per invoice number;
//! - a new recipient (救助新增) of a spells import: one per person, ever.
//!
//! A reversal sends none (see `database/outbox.rs`).
//!
//! Each one-time code (a resident's login, a change of their details) is
//! a notification too, to the phone on record ([`login_code_text`],
//! [`details_code_text`]), written in the transaction that stores the
//! code's hash: its message and phone are kept sealed under the store's
//! data key and blanked once sent; one whose code expired first is never
//! sent. Codes are sent before anything else and at once: making one wakes
//! [`Store::run_dispatcher`](crate::Store::run_dispatcher).
//! [`Store::dispatch_notifications`](crate::Store::dispatch_notifications)
//! claims the due rows in id order, hands each to a [`Sender`] and marks it
//! sent; a failure keeps the row pending with its error and tries it again
//! after an exponential backoff. Two dispatchers on one PostgreSQL database
//! claim different rows (`FOR UPDATE SKIP LOCKED`, with a lease). A sender
//! is told each notification's id, so that it can refuse a repeat: the
//! built-in [`LogFileSender`] does, and so none is sent twice even when the
//! process stops between sending and marking. `jiuzhu serve` dispatches
//! every `notify_interval_ms` to the log file `notification_log`; `jiuzhu
//! notify send` dispatches what is due once.
//! A sender that reaches people by phone uses [`Notification::phone`]; the
//! log file masks it.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// What a notification announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A bill was assisted without an application (免申即享).
    Assisted,
    /// A person became a recipient (救助新增).
    NewRecipient,
    /// A one-time code to log in, to the phone on record.
    LoginCode,
    /// A one-time code to confirm a change of phone or bank account, to
    /// the phone on record.
    DetailsCode,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Assisted => "assisted",
            NotificationKind::NewRecipient => "new_recipient",
            NotificationKind::LoginCode => "login_code",
            NotificationKind::DetailsCode => "details_code",
        }
    }

    pub fn parse(text: &str) -> Option<NotificationKind> {
        match text {
            "assisted" => Some(NotificationKind::Assisted),
            "new_recipient" => Some(NotificationKind::NewRecipient),
            "login_code" => Some(NotificationKind::LoginCode),
            "details_code" => Some(NotificationKind::DetailsCode),
            _ => None,
        }
    }
}

/// One notification of the outbox, as a sender gets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The outbox id: the same notification always has the same id.
    pub id: i64,
    pub kind: NotificationKind,
    /// The person, masked: a sender looks the full ID up if it must.
    pub person: String,
    /// The message, in plain Chinese.
    pub text: String,
    /// When it was written to the outbox.
    pub created_at: String,
    /// The mobile phone it goes to, in full: a one-time code's (the phone
    /// on record when the code was made). `None` for the others, which go
    /// to the person by whatever channel the sender knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// The message carrying a login code: the code, how long it is good for,
/// and not to tell it to anyone.
pub fn login_code_text(code: &str, minutes: i64) -> String {
    format!(
        "您正在登录医疗救助服务，验证码 {code}，{minutes} 分钟内有效。\
         请勿将验证码告诉他人，工作人员不会向您索要。"
    )
}

/// The message carrying a code that confirms a change of phone or bank
/// account: the code, how long it is good for, and what to do if the
/// person did not ask for it.
pub fn details_code_text(code: &str, minutes: i64) -> String {
    format!(
        "您正在修改医疗救助的联系电话或银行账户，验证码 {code}，{minutes} 分钟内有效。\
         请勿将验证码告诉他人；如非本人操作，请联系经办机构。"
    )
}

/// The message for a bill assisted automatically: what was paid, for which
/// bill, where to see it.
pub fn assisted_text(hospital: &str, invoice_no: &str, service_date: &str, amount_yuan: &str) -> String {
    format!(
        "您{service_date}在{hospital}就医的费用（票据号 {invoice_no}）已获医疗救助 {amount_yuan} 元，\
         无需申请，已直接减免或将发放给您。可在“已救助发票查询”中查看每一笔的计算明细。"
    )
}

/// The message for a new recipient: which category, from when, and that
/// nothing needs to be done.
pub fn new_recipient_text(category: &str, valid_from: &str) -> String {
    format!(
        "您已自{valid_from}起纳入医疗救助对象（{category}）。今后就医时，医保报销后的个人负担部分\
         将按政策自动救助，无需申请。可在“救助进度”和“已救助发票查询”中查看。"
    )
}

/// The facts a notification is stored by: the values its message is made
/// of, as a JSON array of strings (see [`message`]).
pub fn facts(values: &[&str]) -> String {
    serde_json::to_string(values).unwrap_or_default()
}

/// The message of a notification of `kind` stored by its `facts`
/// ([`facts`]): for [`NotificationKind::Assisted`] the hospital, invoice
/// number, service date and amount in yuan ([`assisted_text`]); for
/// [`NotificationKind::NewRecipient`] the category's name and the date
/// from which ([`new_recipient_text`]). `None` when the facts are not of
/// that shape.
pub fn message(kind: NotificationKind, facts: &str) -> Option<String> {
    let values: Vec<String> = serde_json::from_str(facts).ok()?;
    match (kind, values.as_slice()) {
        (NotificationKind::Assisted, [hospital, invoice_no, service_date, amount]) => {
            Some(assisted_text(hospital, invoice_no, service_date, amount))
        }
        (NotificationKind::NewRecipient, [category, valid_from]) => {
            Some(new_recipient_text(category, valid_from))
        }
        _ => None,
    }
}

/// Where notifications go: SMS gateway, a government-service app, a log.
pub trait Sender: Send + Sync {
    /// Sends one notification. Sending the same `id` again must not reach
    /// the person twice: a sender that cannot tell must say so.
    fn send(&self, notification: &Notification) -> Result<(), String>;

    /// Makes the notifications sent since the last call durable. The
    /// dispatcher calls it after a round of sends and before it marks them
    /// sent; an `Err` leaves every one of the round pending.
    fn flush(&self) -> Result<(), String> {
        Ok(())
    }
}

/// The built-in sender: one JSON line per notification, appended to a log
/// file, flushed to disk once per round ([`Sender::flush`]) before any of
/// the round counts as sent. An id already in the file is not written
/// again. After a failed write or flush the sender refuses to go on (what
/// reached the file is unknown): a new one, opened on the file, reads which
/// ids it holds. A phone is written masked (`138****5678`).
#[derive(Debug)]
pub struct LogFileSender {
    path: PathBuf,
    state: Mutex<LogState>,
}

#[derive(Debug)]
struct LogState {
    file: File,
    sent: HashSet<i64>,
    /// Whether the file ends with a line break (a crash may have cut the
    /// last line short).
    ends_with_line_break: bool,
    /// A write or flush failed.
    broken: bool,
}

impl LogFileSender {
    /// Opens (or creates) the log and reads which ids it already holds.
    pub fn open(path: &Path) -> std::io::Result<LogFileSender> {
        let mut sent = HashSet::new();
        if let Ok(existing) = File::open(path) {
            for line in BufReader::new(existing).lines() {
                let line = line?;
                // A line cut short by a crash is no notification.
                if let Ok(notification) = serde_json::from_str::<Notification>(&line) {
                    sent.insert(notification.id);
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let length = file.metadata()?.len();
        let ends_with_line_break = if length == 0 {
            true
        } else {
            let mut last = [0u8; 1];
            let mut reader = File::open(path)?;
            reader.seek(SeekFrom::End(-1))?;
            reader.read_exact(&mut last)?;
            last[0] == b'\n'
        };
        Ok(LogFileSender {
            path: path.to_owned(),
            state: Mutex::new(LogState {
                file,
                sent,
                ends_with_line_break,
                broken: false,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl LogFileSender {
    fn state(&self) -> Result<std::sync::MutexGuard<'_, LogState>, String> {
        let state = self
            .state
            .lock()
            .map_err(|_| "the notification log is unusable after an earlier failure".to_owned())?;
        if state.broken {
            return Err(format!(
                "{}: unusable after an earlier failure to write it",
                self.path.display()
            ));
        }
        Ok(state)
    }
}

impl Sender for LogFileSender {
    fn send(&self, notification: &Notification) -> Result<(), String> {
        let mut state = self.state()?;
        if state.sent.contains(&notification.id) {
            return Ok(());
        }
        let line = match &notification.phone {
            Some(phone) => serde_json::to_string(&Notification {
                phone: Some(mask_phone(phone)),
                ..notification.clone()
            }),
            None => serde_json::to_string(notification),
        };
        let mut line = line.map_err(|error| error.to_string())?;
        line.push('\n');
        // A cut line from an earlier crash is ended first, so that this one
        // starts on a line of its own.
        if !state.ends_with_line_break {
            line.insert(0, '\n');
        }
        if let Err(error) = state.file.write_all(line.as_bytes()) {
            state.broken = true;
            return Err(format!("{}: {error}", self.path.display()));
        }
        state.ends_with_line_break = true;
        state.sent.insert(notification.id);
        Ok(())
    }

    fn flush(&self) -> Result<(), String> {
        let mut state = self.state()?;
        if let Err(error) = state.file.sync_data() {
            state.broken = true;
            return Err(format!("{}: {error}", self.path.display()));
        }
        Ok(())
    }
}

/// A phone as screens and logs show it: its first three and last four
/// digits.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().collect();
    if digits.len() < 8 {
        return "*".repeat(digits.len());
    }
    let head: String = digits[..3].iter().collect();
    let tail: String = digits[digits.len() - 4..].iter().collect();
    format!("{head}****{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notification(id: i64) -> Notification {
        Notification {
            id,
            kind: NotificationKind::Assisted,
            person: "110105********0017".to_owned(),
            text: assisted_text("H001", "INV001", "2024-03-01", "1750.00"),
            created_at: "2024-03-05T10:00:00.000Z".to_owned(),
            phone: None,
        }
    }

    #[test]
    fn a_code_message_holds_the_code_and_its_minutes_and_the_log_masks_the_phone() {
        let text = login_code_text("042517", 5);
        for part in ["验证码 042517", "5 分钟内有效", "请勿将验证码告诉他人"] {
            assert!(text.contains(part), "{part} is not in {text}");
        }
        let text = details_code_text("042517", 5);
        for part in ["银行账户", "验证码 042517", "5 分钟内有效", "如非本人操作"] {
            assert!(text.contains(part), "{part} is not in {text}");
        }
        assert_eq!(mask_phone("13812345678"), "138****5678");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notifications.log");
        let sender = LogFileSender::open(&path).unwrap();
        sender
            .send(&Notification {
                kind: NotificationKind::LoginCode,
                text: login_code_text("042517", 5),
                phone: Some("13812345678".to_owned()),
                ..notification(7)
            })
            .unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert!(written.contains("\"phone\":\"138****5678\""), "{written}");
        assert!(!written.contains("13812345678"), "{written}");
        assert!(written.contains("\"kind\":\"login_code\""), "{written}");
    }

    #[test]
    fn a_message_is_written_from_its_facts_and_wrong_facts_are_none() {
        let assisted = facts(&["市第一人民医院", "INV001", "2024-03-01", "1750.00"]);
        assert_eq!(
            message(NotificationKind::Assisted, &assisted).as_deref(),
            Some(assisted_text("市第一人民医院", "INV001", "2024-03-01", "1750.00").as_str())
        );
        let new = facts(&["最低生活保障对象", "2024-01-01"]);
        assert_eq!(
            message(NotificationKind::NewRecipient, &new).as_deref(),
            Some(new_recipient_text("最低生活保障对象", "2024-01-01").as_str())
        );
        // A quote or a backslash in a value survives the round trip.
        let odd = facts(&["\"H\\1\"", "2024-01-01"]);
        assert!(message(NotificationKind::NewRecipient, &odd)
            .unwrap()
            .contains("\"H\\1\""));
        // The facts of one kind are not a message of the other, nor is text.
        assert_eq!(message(NotificationKind::NewRecipient, &assisted), None);
        assert_eq!(message(NotificationKind::Assisted, &new), None);
        assert_eq!(message(NotificationKind::Assisted, "您已"), None);
        assert_eq!(message(NotificationKind::Assisted, "[1, 2, 3, 4]"), None);
    }

    #[test]
    fn the_texts_say_what_where_and_that_nothing_is_needed() {
        let text = assisted_text("市第一人民医院", "INV001", "2024-03-01", "1750.00");
        for part in [
            "市第一人民医院",
            "INV001",
            "2024-03-01",
            "1750.00 元",
            "无需申请",
            "已救助发票查询",
        ] {
            assert!(text.contains(part), "{part} is not in {text}");
        }
        let text = new_recipient_text("低保", "2024-01-01");
        for part in ["低保", "2024-01-01", "无需申请"] {
            assert!(text.contains(part), "{part} is not in {text}");
        }
    }

    #[test]
    fn the_log_sender_writes_each_id_once_even_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notifications.log");
        let sender = LogFileSender::open(&path).unwrap();
        sender.send(&notification(1)).unwrap();
        sender.send(&notification(2)).unwrap();
        sender.send(&notification(1)).unwrap();
        drop(sender);
        // A crash left half a line; a restart sends 2 and 3 again.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"id\":3,\"ki")
            .unwrap();
        let sender = LogFileSender::open(&path).unwrap();
        sender.send(&notification(2)).unwrap();
        sender.send(&notification(3)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let ids: Vec<i64> = text
            .lines()
            .filter_map(|line| serde_json::from_str::<Notification>(line).ok())
            .map(|notification| notification.id)
            .collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert!(text.ends_with('\n'));
    }
}
