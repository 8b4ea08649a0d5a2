//! Who runs the statement, and whether they may read or write a relation.
//!
//! The role is set for the whole statement (like its snapshot, in a task-local),
//! and checked where every read and write of a relation passes: the table
//! provider's scan and its write entry points. A path that forgets to set a role
//! is refused, not trusted.

use std::sync::Arc;

use super::roles::{Access, Roles};
use crate::engine::SqlError;

tokio::task_local! {
    static CURRENT_ROLE: SessionRole;
}

/// The role a connection logged in as, and the roles it is checked against.
#[derive(Clone)]
pub struct SessionRole {
    pub name: String,
    pub roles: Arc<Roles>,
}

/// Runs `work` as `role`.
pub async fn run_as<F: std::future::Future>(role: SessionRole, work: F) -> F::Output {
    CURRENT_ROLE.scope(role, work).await
}

/// The name of the role running the current statement, if any.
pub fn current_role() -> Option<String> {
    CURRENT_ROLE.try_with(|role| role.name.clone()).ok()
}

/// Refuses (42501) unless the current role may `access` the relation `relation`.
/// Rights are looked up on every statement, so a REVOKE applies to open sessions too.
pub fn require(access: Access, relation: &str) -> Result<(), SqlError> {
    let granted = CURRENT_ROLE.try_with(|role| role.roles.access(&role.name)).unwrap_or(Access::None);
    if granted >= access {
        return Ok(());
    }
    let (what, grant) = match access {
        Access::Write => ("write to", super::roles::WRITE_ALL_DATA),
        _ => ("read", super::roles::READ_ALL_DATA),
    };
    let role = current_role().unwrap_or_default();
    Err(SqlError::new("42501", format!("permission denied to {what} \"{relation}\": role \"{role}\" needs {grant}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgwire::roles::{READ_ALL_DATA, RoleOptions};

    #[tokio::test]
    async fn rights_follow_grants_and_nothing_is_allowed_without_a_role() {
        let roles = Arc::new(Roles::open(None, None).unwrap());
        roles.create("reader", &RoleOptions::default(), false).unwrap();
        roles.set_membership(READ_ALL_DATA, "reader", true).unwrap();
        let reader = SessionRole { name: "reader".into(), roles: roles.clone() };
        run_as(reader.clone(), async {
            require(Access::Read, "orders").unwrap();
            let refused = require(Access::Write, "orders").unwrap_err();
            assert_eq!(refused.sqlstate, "42501");
            assert!(refused.message.contains("pg_write_all_data"), "{}", refused.message);
        })
        .await;
        roles.set_membership(READ_ALL_DATA, "reader", false).unwrap();
        run_as(reader, async { assert_eq!(require(Access::Read, "orders").unwrap_err().sqlstate, "42501") }).await;
        assert_eq!(require(Access::Read, "orders").unwrap_err().sqlstate, "42501");
        run_as(SessionRole { name: "root".into(), roles }, async { require(Access::Write, "orders").unwrap() }).await;
    }
}
