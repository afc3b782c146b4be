//! A rendered [`Tree`](crate::render::Tree) against the disk: plan (create / update / merge /
//! conflict / unchanged), then apply atomically, recording what was generated as the base of
//! the next three-way merge.

mod apply;
mod base;
mod diff;
pub(crate) mod inside;
mod plan;
#[cfg(test)]
mod testing;
mod txn;

pub use apply::{apply_with, Applied, NEW_SUFFIX};
pub use base::{check_base, read_base, BASE_DIR};
pub use diff::unified_diff;
pub use plan::{has_conflict_markers, plan, Action, Plan, PlanOptions};
pub use txn::{recover, NewFile};
