//! A decision in plain words: each step of `calculation.md` that led to it.

use crate::engine::{Decision, Outcome};
use crate::money::Fen;
use crate::policy::Policy;

impl Decision {
    /// The steps behind the decision, one sentence each, for analysts and
    /// auditors. `policy` must be the one the decision was made under.
    pub fn explanation(&self, policy: &Policy) -> Vec<String> {
        let category = self.category.map(|category| {
            let category = policy.category(category);
            match &category.name {
                Some(name) => format!("{} {name}", category.code),
                None => category.code.clone(),
            }
        });
        let pool = self.pool.map(|pool| policy.pool_name(pool).to_owned());
        let version = self.version.map(|version| policy.version(version));
        match self.outcome {
            Outcome::Duplicate => vec![
                "Duplicate: an earlier bill in canonical order has the same number, so this one pays nothing."
                    .to_owned(),
            ],
            Outcome::NotEligible => {
                vec!["Not eligible: no category spell covers the service date.".to_owned()]
            }
            Outcome::NoRule => {
                let category = category.unwrap_or_default();
                let pool = pool.unwrap_or_default();
                let reason = match version {
                    None => "no policy version is in force on the service date".to_owned(),
                    Some(version) => {
                        let rule = self.category.and_then(|category| version.rule(category));
                        match rule {
                            None => {
                                format!("version {} has no rule for this category", version.effective_from)
                            }
                            Some(_) => format!(
                                "the rule of version {} pays nothing from pool {pool}",
                                version.effective_from
                            ),
                        }
                    }
                };
                vec![format!(
                    "No rule: category {category} holds on the service date, but {reason}."
                )]
            }
            Outcome::Assisted | Outcome::Capped => {
                let rule = version
                    .zip(self.category)
                    .and_then(|(version, category)| version.rule(category));
                let pool_rule = rule.zip(self.pool).and_then(|(rule, pool)| rule.pool(pool));
                let mut lines = vec![format!(
                    "Category {} under policy version {}, pool {}.",
                    category.unwrap_or_default(),
                    version
                        .map(|version| version.effective_from.to_string())
                        .unwrap_or_default(),
                    pool.unwrap_or_default()
                )];
                let deductible = pool_rule.map_or(Fen::ZERO, |pool_rule| pool_rule.deductible);
                lines.push(format!(
                    "Base (in-scope self-pay) {}; of the year's deductible of {deductible}, {} is taken from this bill; eligible {}.",
                    self.base, self.deductible_applied, self.eligible
                ));
                let mut raw = format!(
                    "{} × {} = {}",
                    self.eligible,
                    self.ratio.percent(),
                    self.raw_in_scope
                );
                if !self.out_of_scope_ratio.is_zero_ratio() {
                    raw.push_str(&format!(
                        "; out-of-scope self-pay {} × {} = {}",
                        self.out_of_scope_self_pay,
                        self.out_of_scope_ratio.percent(),
                        self.raw_out_of_scope
                    ));
                }
                lines.push(format!("{raw}; before caps {}.", self.raw));
                if let (Some(room), Some(cap)) =
                    (self.pool_cap_room, pool_rule.and_then(|pool_rule| pool_rule.cap))
                {
                    lines.push(format!("Pool cap {cap} a year: {room} left before this bill."));
                }
                if let (Some(room), Some(cap)) = (self.annual_cap_room, rule.and_then(|rule| rule.annual_cap))
                {
                    lines.push(format!(
                        "Annual cap {cap} over all pools: {room} left before this bill."
                    ));
                }
                if self.outcome == Outcome::Capped {
                    lines.push(format!(
                        "Paid {}: capped, {} less than before caps.",
                        self.amount,
                        Fen::from_fen(self.raw.fen() - self.amount.fen())
                    ));
                } else {
                    lines.push(format!("Paid {}.", self.amount));
                }
                lines
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{decide, Claim, Counters, Decision};
    use crate::money::{BasisPoints, Fen};
    use crate::policy::{CategoryDraft, Policy, PolicyDraft, PoolRule, RuleDraft, VersionDraft};
    use crate::time::Date;

    fn policy() -> Policy {
        Policy::from_draft(PolicyDraft {
            name: None,
            categories: vec![CategoryDraft {
                code: "DB".into(),
                name: Some("低保对象".into()),
                rank: 1,
            }],
            pools: vec![
                ("inpatient".into(), "inpatient".into()),
                ("outpatient".into(), "outpatient".into()),
            ],
            versions: vec![VersionDraft {
                effective_from: Date::parse("2024-01-01").unwrap(),
                rules: vec![RuleDraft {
                    category: "DB".into(),
                    annual_cap: None,
                    pools: vec![(
                        "inpatient".into(),
                        PoolRule {
                            deductible: Fen::from_fen(100_000),
                            ratio: BasisPoints::new(9000).unwrap(),
                            out_of_scope_ratio: BasisPoints::ZERO,
                            cap: Some(Fen::from_fen(1_000_000)),
                        },
                    )],
                }],
            }],
        })
        .unwrap()
    }

    fn claim(policy: &Policy, visit_type: &str, base: i64) -> Claim {
        Claim {
            category: policy.category_by_code("DB"),
            service_date: Date::parse("2024-05-01").unwrap(),
            pool: policy.pool_of_visit_type(visit_type).unwrap(),
            base: Fen::from_fen(base),
            out_of_scope_self_pay: Fen::ZERO,
        }
    }

    #[test]
    fn an_assisted_bill_is_explained_step_by_step() {
        let policy = policy();
        let decision = decide(
            &policy,
            &claim(&policy, "inpatient", 300_000),
            &mut Counters::new(2),
        );
        assert_eq!(
            decision.explanation(&policy),
            [
                "Category DB 低保对象 under policy version 2024-01-01, pool inpatient.",
                "Base (in-scope self-pay) 3000.00; of the year's deductible of 1000.00, 1000.00 is taken from this bill; eligible 2000.00.",
                "2000.00 × 90% = 1800.00; before caps 1800.00.",
                "Pool cap 10000.00 a year: 10000.00 left before this bill.",
                "Paid 1800.00.",
            ]
        );
    }

    #[test]
    fn a_bill_without_a_pool_entry_says_why_nothing_is_paid() {
        let policy = policy();
        let decision = decide(
            &policy,
            &claim(&policy, "outpatient", 300_000),
            &mut Counters::new(2),
        );
        assert_eq!(
            decision.explanation(&policy),
            ["No rule: category DB 低保对象 holds on the service date, but the rule of version 2024-01-01 pays nothing from pool outpatient."]
        );
        assert!(Decision::duplicate().explanation(&policy)[0].starts_with("Duplicate"));
    }
}
