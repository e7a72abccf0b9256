//! Jiuzhu's interchange formats (`shared/spec/formats.md`): every file that
//! enters goes through one validating reader here, and every problem names
//! its file, line and column.

pub mod policy_toml;
pub mod problem;

pub use policy_toml::{parse_policy, read_policy_file};
pub use problem::{Problem, Problems, MAX_PROBLEMS_REPORTED};
pub mod results;
pub use results::{write_results, RESULTS_HEADER};
