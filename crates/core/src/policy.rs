//! The bureau's policy: categories, visit types and pools, and dated versions
//! of rules. Built only through [`Policy::from_draft`], which applies every
//! validity rule of `formats.md`.

use std::fmt;

use rustc_hash::FxHashMap;
use thiserror::Error;

use crate::money::{BasisPoints, Fen};
use crate::time::Date;

/// A category's index in its policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CategoryId(pub(crate) u16);

/// A pool's index in its policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolId(pub(crate) u8);

/// A version's index in its policy, in order of `effective_from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionId(pub(crate) u16);

impl CategoryId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl PoolId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl VersionId {
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// The most categories, pools and versions a policy may define: limits
/// that no real policy comes near, and that keep the indexes small.
pub const MAX_CATEGORIES: usize = 1000;
pub const MAX_POOLS: usize = 64;
pub const MAX_VERSIONS: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub code: String,
    pub name: Option<String>,
    pub rank: i64,
}

/// What one pool pays under one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolRule {
    /// Per person, year and pool.
    pub deductible: Fen,
    /// Of the base above the deductible.
    pub ratio: BasisPoints,
    /// Of the out-of-scope self-pay; 0 when the policy does not say.
    pub out_of_scope_ratio: BasisPoints,
    /// Per person, year and pool.
    pub cap: Option<Fen>,
}

/// The rule for one category in one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub category: CategoryId,
    /// Across all pools, per person and year.
    pub annual_cap: Option<Fen>,
    pools: Vec<Option<PoolRule>>,
}

impl Rule {
    pub fn pool(&self, pool: PoolId) -> Option<&PoolRule> {
        self.pools.get(pool.index()).and_then(Option::as_ref)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub effective_from: Date,
    rules: Vec<Option<Rule>>,
}

impl Version {
    pub fn rule(&self, category: CategoryId) -> Option<&Rule> {
        self.rules.get(category.index()).and_then(Option::as_ref)
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().flatten()
    }
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    name: Option<String>,
    categories: Vec<Category>,
    category_by_code: FxHashMap<String, CategoryId>,
    pools: Vec<String>,
    visit_types: Vec<(String, PoolId)>,
    versions: Vec<Version>,
}

/// A policy as written, before validation: what a reader of `policy.toml`
/// (or a test) fills in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyDraft {
    pub name: Option<String>,
    pub categories: Vec<CategoryDraft>,
    /// `[pools]`: visit type → pool name, in file order.
    pub pools: Vec<(String, String)>,
    pub versions: Vec<VersionDraft>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryDraft {
    pub code: String,
    pub name: Option<String>,
    pub rank: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDraft {
    pub effective_from: Date,
    pub rules: Vec<RuleDraft>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDraft {
    pub category: String,
    pub annual_cap: Option<Fen>,
    /// Pool name → what it pays, in file order.
    pub pools: Vec<(String, PoolRule)>,
}

/// One reason a draft is not a valid policy, pointing at the element of the
/// draft at fault (indexes into the draft's vectors, in file order) so that
/// a reader can name the line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PolicyProblem {
    #[error("category code {code:?} is defined twice")]
    DuplicateCategoryCode { category: usize, code: String },
    #[error("rank {rank} is given to two categories")]
    DuplicateRank { category: usize, rank: i64 },
    #[error("category code must not be empty")]
    EmptyCategoryCode { category: usize },
    #[error("rule names category {code:?}, which the policy does not define")]
    UndefinedCategory {
        version: usize,
        rule: usize,
        code: String,
    },
    #[error("a second rule for category {code:?} in the same version")]
    DuplicateRule {
        version: usize,
        rule: usize,
        code: String,
    },
    #[error("two versions take effect on {date}")]
    DuplicateVersion { version: usize, date: Date },
    #[error("pool {name:?} is not a pool of [pools]")]
    UnknownPool {
        version: usize,
        rule: usize,
        pool: usize,
        name: String,
    },
    #[error("visit type must not be empty")]
    EmptyVisitType { visit_type: usize },
    #[error("pool name must not be empty")]
    EmptyPoolName { visit_type: usize },
    #[error("too many {what}: at most {limit}")]
    TooMany { what: &'static str, limit: usize },
}

impl Policy {
    /// Validates a draft. Returns every problem found, in file order.
    pub fn from_draft(draft: PolicyDraft) -> Result<Policy, Vec<PolicyProblem>> {
        let mut problems = Vec::new();
        if draft.categories.len() > MAX_CATEGORIES {
            problems.push(PolicyProblem::TooMany {
                what: "categories",
                limit: MAX_CATEGORIES,
            });
        }
        if draft.versions.len() > MAX_VERSIONS {
            problems.push(PolicyProblem::TooMany {
                what: "versions",
                limit: MAX_VERSIONS,
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }

        let mut category_by_code: FxHashMap<String, CategoryId> = FxHashMap::default();
        let mut ranks: FxHashMap<i64, usize> = FxHashMap::default();
        let mut categories = Vec::with_capacity(draft.categories.len());
        for (index, category) in draft.categories.into_iter().enumerate() {
            if category.code.is_empty() {
                problems.push(PolicyProblem::EmptyCategoryCode { category: index });
            } else if category_by_code.contains_key(&category.code) {
                problems.push(PolicyProblem::DuplicateCategoryCode {
                    category: index,
                    code: category.code.clone(),
                });
            } else {
                category_by_code.insert(category.code.clone(), CategoryId(categories.len() as u16));
            }
            if ranks.insert(category.rank, index).is_some() {
                problems.push(PolicyProblem::DuplicateRank {
                    category: index,
                    rank: category.rank,
                });
            }
            categories.push(Category {
                code: category.code,
                name: category.name,
                rank: category.rank,
            });
        }

        let mut pools: Vec<String> = Vec::new();
        let mut visit_types = Vec::with_capacity(draft.pools.len());
        for (index, (visit_type, pool_name)) in draft.pools.into_iter().enumerate() {
            if visit_type.is_empty() {
                problems.push(PolicyProblem::EmptyVisitType { visit_type: index });
            }
            if pool_name.is_empty() {
                problems.push(PolicyProblem::EmptyPoolName { visit_type: index });
            }
            let pool = match pools.iter().position(|name| *name == pool_name) {
                Some(position) => position,
                None => {
                    pools.push(pool_name);
                    pools.len() - 1
                }
            };
            if pools.len() > MAX_POOLS {
                return Err(vec![PolicyProblem::TooMany {
                    what: "pools",
                    limit: MAX_POOLS,
                }]);
            }
            visit_types.push((visit_type, PoolId(pool as u8)));
        }

        let mut dates: FxHashMap<Date, usize> = FxHashMap::default();
        let mut versions = Vec::with_capacity(draft.versions.len());
        for (version_index, version) in draft.versions.into_iter().enumerate() {
            if dates.insert(version.effective_from, version_index).is_some() {
                problems.push(PolicyProblem::DuplicateVersion {
                    version: version_index,
                    date: version.effective_from,
                });
            }
            let mut rules: Vec<Option<Rule>> = vec![None; categories.len()];
            for (rule_index, rule) in version.rules.into_iter().enumerate() {
                let category = category_by_code.get(&rule.category).copied();
                match category {
                    None => problems.push(PolicyProblem::UndefinedCategory {
                        version: version_index,
                        rule: rule_index,
                        code: rule.category.clone(),
                    }),
                    Some(category) if rules[category.index()].is_some() => {
                        problems.push(PolicyProblem::DuplicateRule {
                            version: version_index,
                            rule: rule_index,
                            code: rule.category.clone(),
                        })
                    }
                    Some(_) => {}
                }
                let mut pool_rules: Vec<Option<PoolRule>> = vec![None; pools.len()];
                for (pool_index, (pool_name, pool_rule)) in rule.pools.into_iter().enumerate() {
                    match pools.iter().position(|name| *name == pool_name) {
                        Some(position) => pool_rules[position] = Some(pool_rule),
                        None => problems.push(PolicyProblem::UnknownPool {
                            version: version_index,
                            rule: rule_index,
                            pool: pool_index,
                            name: pool_name,
                        }),
                    }
                }
                if let Some(category) = category {
                    if rules[category.index()].is_none() {
                        rules[category.index()] = Some(Rule {
                            category,
                            annual_cap: rule.annual_cap,
                            pools: pool_rules,
                        });
                    }
                }
            }
            versions.push(Version {
                effective_from: version.effective_from,
                rules,
            });
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        versions.sort_by_key(|version| version.effective_from);
        Ok(Policy {
            name: draft.name,
            categories,
            category_by_code,
            pools,
            visit_types,
            versions,
        })
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    pub fn category(&self, id: CategoryId) -> &Category {
        &self.categories[id.index()]
    }

    pub fn category_by_code(&self, code: &str) -> Option<CategoryId> {
        self.category_by_code.get(code).copied()
    }

    pub fn category_ids(&self) -> impl Iterator<Item = CategoryId> {
        (0..self.categories.len()).map(|index| CategoryId(index as u16))
    }

    pub fn pool_names(&self) -> &[String] {
        &self.pools
    }

    pub fn pool_name(&self, pool: PoolId) -> &str {
        &self.pools[pool.index()]
    }

    pub fn pool_ids(&self) -> impl Iterator<Item = PoolId> {
        (0..self.pools.len()).map(|index| PoolId(index as u8))
    }

    /// `[pools]`: every visit type with its pool, in file order.
    pub fn visit_types(&self) -> &[(String, PoolId)] {
        &self.visit_types
    }

    /// The pool a visit type draws on; `None` for a visit type the policy
    /// does not know.
    pub fn pool_of_visit_type(&self, visit_type: &str) -> Option<PoolId> {
        self.visit_types
            .iter()
            .find(|(name, _)| name == visit_type)
            .map(|(_, pool)| *pool)
    }

    /// Versions in order of `effective_from`.
    pub fn versions(&self) -> &[Version] {
        &self.versions
    }

    pub fn version(&self, id: VersionId) -> &Version {
        &self.versions[id.index()]
    }

    /// The version in force on `date`: the latest with `effective_from` ≤ date.
    pub fn version_on(&self, date: Date) -> Option<VersionId> {
        let after = self
            .versions
            .partition_point(|version| version.effective_from <= date);
        after.checked_sub(1).map(|index| VersionId(index as u16))
    }
}

impl fmt::Display for CategoryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "category #{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> Date {
        Date::parse(text).unwrap()
    }

    fn pool_rule(deductible: i64, ratio: u16) -> PoolRule {
        PoolRule {
            deductible: Fen::from_fen(deductible),
            ratio: BasisPoints::new(ratio).unwrap(),
            out_of_scope_ratio: BasisPoints::ZERO,
            cap: None,
        }
    }

    fn draft() -> PolicyDraft {
        PolicyDraft {
            name: Some("test".into()),
            categories: vec![
                CategoryDraft {
                    code: "TK".into(),
                    name: None,
                    rank: 1,
                },
                CategoryDraft {
                    code: "DB".into(),
                    name: None,
                    rank: 2,
                },
            ],
            pools: vec![
                ("outpatient".into(), "outpatient".into()),
                ("chronic".into(), "outpatient".into()),
                ("inpatient".into(), "inpatient".into()),
            ],
            versions: vec![
                VersionDraft {
                    effective_from: date("2025-01-01"),
                    rules: vec![RuleDraft {
                        category: "TK".into(),
                        annual_cap: None,
                        pools: vec![("inpatient".into(), pool_rule(0, 10_000))],
                    }],
                },
                VersionDraft {
                    effective_from: date("2024-01-01"),
                    rules: vec![RuleDraft {
                        category: "DB".into(),
                        annual_cap: Some(Fen::from_fen(100)),
                        pools: vec![("outpatient".into(), pool_rule(50, 9000))],
                    }],
                },
            ],
        }
    }

    #[test]
    fn a_valid_draft_becomes_a_policy_with_versions_in_date_order() {
        let policy = Policy::from_draft(draft()).unwrap();
        assert_eq!(policy.pool_names(), ["outpatient", "inpatient"]);
        assert_eq!(
            policy.pool_of_visit_type("chronic"),
            policy.pool_of_visit_type("outpatient")
        );
        assert_eq!(policy.pool_of_visit_type("dental"), None);
        assert_eq!(policy.versions()[0].effective_from, date("2024-01-01"));
        assert_eq!(policy.version_on(date("2023-12-31")), None);
        assert_eq!(policy.version_on(date("2024-01-01")), Some(VersionId(0)));
        assert_eq!(policy.version_on(date("2024-12-31")), Some(VersionId(0)));
        assert_eq!(policy.version_on(date("2025-01-01")), Some(VersionId(1)));
        let db = policy.category_by_code("DB").unwrap();
        let rule = policy.version(VersionId(0)).rule(db).unwrap();
        let outpatient = policy.pool_of_visit_type("outpatient").unwrap();
        assert_eq!(
            rule.pool(outpatient).unwrap().ratio,
            BasisPoints::new(9000).unwrap()
        );
        assert!(policy.version(VersionId(1)).rule(db).is_none());
    }

    #[test]
    fn an_unknown_pool_is_named_by_its_name_in_the_message() {
        let problem = PolicyProblem::UnknownPool {
            version: 0,
            rule: 0,
            pool: 3,
            name: "dental".into(),
        };
        assert_eq!(problem.to_string(), "pool \"dental\" is not a pool of [pools]");
    }

    #[test]
    fn every_invalid_element_is_reported_with_its_place() {
        let mut bad = draft();
        bad.categories.push(CategoryDraft {
            code: "TK".into(),
            name: None,
            rank: 3,
        });
        bad.categories.push(CategoryDraft {
            code: "ZC".into(),
            name: None,
            rank: 2,
        });
        bad.versions.push(VersionDraft {
            effective_from: date("2024-01-01"),
            rules: vec![
                RuleDraft {
                    category: "XX".into(),
                    annual_cap: None,
                    pools: vec![],
                },
                RuleDraft {
                    category: "DB".into(),
                    annual_cap: None,
                    pools: vec![("dental".into(), pool_rule(0, 0))],
                },
                RuleDraft {
                    category: "DB".into(),
                    annual_cap: None,
                    pools: vec![],
                },
            ],
        });
        let problems = Policy::from_draft(bad).unwrap_err();
        assert_eq!(
            problems,
            vec![
                PolicyProblem::DuplicateCategoryCode {
                    category: 2,
                    code: "TK".into()
                },
                PolicyProblem::DuplicateRank { category: 3, rank: 2 },
                PolicyProblem::DuplicateVersion {
                    version: 2,
                    date: date("2024-01-01")
                },
                PolicyProblem::UndefinedCategory {
                    version: 2,
                    rule: 0,
                    code: "XX".into()
                },
                PolicyProblem::UnknownPool {
                    version: 2,
                    rule: 1,
                    pool: 0,
                    name: "dental".into()
                },
                PolicyProblem::DuplicateRule {
                    version: 2,
                    rule: 2,
                    code: "DB".into()
                },
            ]
        );
    }
}
