//! Helpers shared by the integration tests.

#![allow(dead_code)]

use jiuzhu_core::Policy;

pub const POLICY: &str = r#"
name = "Test policy"

[[category]]
code = "TK"
rank = 1

[[category]]
code = "DB"
rank = 2

[pools]
outpatient = "outpatient"
chronic = "outpatient"
inpatient = "inpatient"
"#;

pub fn policy() -> Policy {
    jiuzhu_formats::parse_policy("policy.toml", POLICY).unwrap()
}

pub fn visit_types() -> Vec<String> {
    vec!["outpatient".into(), "chronic".into(), "inpatient".into()]
}

pub fn messages(problems: &jiuzhu_formats::Problems) -> Vec<String> {
    problems.kept().iter().map(ToString::to_string).collect()
}
