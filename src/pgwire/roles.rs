//! Roles: who may log in, with which password, and what they may read or write.
//!
//! The model is PostgreSQL's, cut to what a server of maintained views needs:
//! a role may log in (`LOGIN`), may be a superuser, and may be a member of the
//! predefined roles `pg_read_all_data` (SELECT, SUBSCRIBE) and `pg_write_all_data`
//! (also INSERT, UPDATE, DELETE and COPY into tables). Unlike PostgreSQL, writing
//! includes reading: an UPDATE or DELETE reads the rows it matches.
//!
//! `root` is the built-in superuser. Its password comes from `--root-password`
//! (or `DIFFMART_ROOT_PASSWORD`) at every start, so it cannot be lost; every
//! other role lives in `roles.json` in the data directory (mode 0600), replaced
//! atomically on every change, or only in memory with `--ephemeral`.
//!
//! Passwords are kept as SCRAM-SHA-256 salted passwords (RFC 5802), never as text.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as BASE64;
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role as CatalogRole};
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, gen_salted_password};
use serde::{Deserialize, Serialize};

use crate::engine::SqlError;
use crate::engine::data_dir::write_atomically_with;

/// The built-in superuser.
pub const ROOT: &str = "root";
/// Members may SELECT (and SUBSCRIBE) every relation.
pub const READ_ALL_DATA: &str = "pg_read_all_data";
/// Members may also write every table.
pub const WRITE_ALL_DATA: &str = "pg_write_all_data";

/// The name of the roles file in the data directory.
const ROLES_FILE: &str = "roles.json";

/// What a role may do with relations, in increasing order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Log in and read the system catalog only.
    None,
    /// SELECT and SUBSCRIBE.
    Read,
    /// Also INSERT, UPDATE, DELETE and COPY FROM into tables.
    Write,
}

/// A SCRAM-SHA-256 secret: what the server needs to check a password without keeping it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScramSecret {
    pub iterations: usize,
    #[serde(with = "base64_bytes")]
    pub salt: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub salted_password: Vec<u8>,
}

impl ScramSecret {
    /// The secret of `password` with a fresh random salt.
    pub fn new(password: &str) -> ScramSecret {
        let salt: [u8; 16] = rand::random();
        let salted_password = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        ScramSecret { iterations: SCRAM_ITERATIONS, salt: salt.to_vec(), salted_password }
    }

    /// A secret no password matches: unknown roles get one, so a failed login
    /// does not tell whether the role exists.
    pub fn unmatchable() -> ScramSecret {
        let salt: [u8; 16] = rand::random();
        let salted_password: [u8; 32] = rand::random();
        ScramSecret { iterations: SCRAM_ITERATIONS, salt: salt.to_vec(), salted_password: salted_password.to_vec() }
    }
}

/// One role as kept in `roles.json`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Role {
    pub login: bool,
    pub superuser: bool,
    pub read_all_data: bool,
    pub write_all_data: bool,
    pub password: Option<ScramSecret>,
}

impl Role {
    pub fn access(&self) -> Access {
        if self.superuser || self.write_all_data {
            Access::Write
        } else if self.read_all_data {
            Access::Read
        } else {
            Access::None
        }
    }
}

/// Options of `CREATE ROLE` / `ALTER ROLE`; `None` leaves a setting as it is.
#[derive(Clone, Debug, Default)]
pub struct RoleOptions {
    pub login: Option<bool>,
    pub superuser: Option<bool>,
    /// `Some(None)` is `PASSWORD NULL`: the role can no longer log in with a password.
    pub password: Option<Option<String>>,
}

#[derive(Default, Serialize, Deserialize)]
struct RolesFile {
    roles: BTreeMap<String, Role>,
}

/// Every role, shared by all connections.
pub struct Roles {
    roles: RwLock<BTreeMap<String, Role>>,
    root_password: Option<ScramSecret>,
    file: Option<PathBuf>,
}

impl std::fmt::Debug for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Roles {
    /// Roles kept in `data_dir` (`None`: in memory only), with `root`'s password if one is set.
    pub fn open(data_dir: Option<&Path>, root_password: Option<&str>) -> anyhow::Result<Roles> {
        let file = data_dir.map(|dir| dir.join(ROLES_FILE));
        let roles = match &file {
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => {
                    serde_json::from_slice::<RolesFile>(&bytes)
                        .with_context(|| format!("reading the roles in {}", path.display()))?
                        .roles
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            },
            None => BTreeMap::new(),
        };
        Ok(Roles { roles: RwLock::new(roles), root_password: root_password.map(ScramSecret::new), file })
    }

    /// Whether logging in needs a password (`root` has one).
    pub fn passwords_required(&self) -> bool {
        self.root_password.is_some()
    }

    /// The role `name`, if it exists (`root` always does).
    pub fn get(&self, name: &str) -> Option<Role> {
        if name == ROOT {
            return Some(Role {
                login: true,
                superuser: true,
                read_all_data: true,
                write_all_data: true,
                password: self.root_password.clone(),
            });
        }
        self.roles.read().unwrap().get(name).cloned()
    }

    /// Whether `password` is the password of `name`, a role that may log in: for
    /// clients that send a password in clear over their own channel (the dashboard's
    /// HTTP Basic auth). The salted password is derived with the role's stored salt and
    /// iterations and compared in constant time with the stored one; an unknown role,
    /// or one without a password, is checked against [`ScramSecret::unmatchable`], so
    /// the answer takes as long and does not tell whether the role exists.
    pub fn verify_password(&self, name: &str, password: &str) -> bool {
        let role = self.get(name).filter(|role| role.login);
        let known = role.as_ref().is_some_and(|role| role.password.is_some());
        let secret = role.and_then(|role| role.password).unwrap_or_else(ScramSecret::unmatchable);
        let derived = gen_salted_password(password, &secret.salt, secret.iterations);
        let same: bool = subtle::ConstantTimeEq::ct_eq(derived.as_slice(), secret.salted_password.as_slice()).into();
        known && same
    }

    /// What `name` may do; nothing if it does not exist (any more).
    pub fn access(&self, name: &str) -> Access {
        self.get(name).map_or(Access::None, |role| role.access())
    }

    pub fn is_superuser(&self, name: &str) -> bool {
        self.get(name).is_some_and(|role| role.superuser)
    }

    /// Every role's name, `root` included.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> =
            std::iter::once(ROOT.to_string()).chain(self.roles.read().unwrap().keys().cloned()).collect();
        names.sort();
        names
    }

    pub fn create(&self, name: &str, options: &RoleOptions, if_not_exists: bool) -> Result<bool, SqlError> {
        check_manageable(name)?;
        self.change(|roles| {
            if roles.contains_key(name) {
                return if if_not_exists {
                    Ok(false)
                } else {
                    Err(SqlError::new("42710", format!("role \"{name}\" already exists")))
                };
            }
            let mut role = Role::default();
            apply(&mut role, options);
            roles.insert(name.to_string(), role);
            Ok(true)
        })
    }

    pub fn alter(&self, name: &str, options: &RoleOptions) -> Result<(), SqlError> {
        check_manageable(name)?;
        self.change(|roles| {
            let role = roles.get_mut(name).ok_or_else(|| does_not_exist(name))?;
            apply(role, options);
            Ok(())
        })
    }

    /// Drops `name`; false if it did not exist and `if_exists` allowed that.
    pub fn drop(&self, name: &str, if_exists: bool) -> Result<bool, SqlError> {
        check_manageable(name)?;
        self.change(|roles| match roles.remove(name) {
            Some(_) => Ok(true),
            None if if_exists => Ok(false),
            None => Err(does_not_exist(name)),
        })
    }

    /// Grants (or with `member == false` revokes) membership of a predefined role.
    pub fn set_membership(&self, predefined: &str, name: &str, member: bool) -> Result<(), SqlError> {
        if name == ROOT {
            return Err(SqlError::new("42501", "root is a superuser; its rights cannot change"));
        }
        self.change(|roles| {
            let role = roles.get_mut(name).ok_or_else(|| does_not_exist(name))?;
            match predefined {
                READ_ALL_DATA => role.read_all_data = member,
                WRITE_ALL_DATA => role.write_all_data = member,
                other => return Err(not_grantable(other)),
            }
            Ok(())
        })
    }

    /// Applies `change` to a copy of the roles, keeps it on disk, then makes it current:
    /// a change that cannot be saved changes nothing.
    fn change<T>(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, Role>) -> Result<T, SqlError>,
    ) -> Result<T, SqlError> {
        let mut current = self.roles.write().unwrap();
        let mut changed = current.clone();
        let outcome = change(&mut changed)?;
        if let Some(path) = &self.file {
            save(path, &changed).map_err(|e| SqlError::new("58030", format!("cannot save the roles: {e:#}")))?;
        }
        *current = changed;
        Ok(outcome)
    }
}

fn apply(role: &mut Role, options: &RoleOptions) {
    if let Some(login) = options.login {
        role.login = login;
    }
    if let Some(superuser) = options.superuser {
        role.superuser = superuser;
    }
    if let Some(password) = &options.password {
        role.password = password.as_deref().map(ScramSecret::new);
    }
}

/// `root` and the predefined roles are not managed with role statements.
fn check_manageable(name: &str) -> Result<(), SqlError> {
    if name == ROOT {
        return Err(SqlError::new(
            "42501",
            "role \"root\" is built in: its password comes from --root-password (DIFFMART_ROOT_PASSWORD)",
        ));
    }
    if name.starts_with("pg_") {
        return Err(SqlError::new("42939", format!("role name \"{name}\" is reserved")));
    }
    if name.is_empty() {
        return Err(SqlError::new("42602", "a role name cannot be empty"));
    }
    Ok(())
}

fn does_not_exist(name: &str) -> SqlError {
    SqlError::new("42704", format!("role \"{name}\" does not exist"))
}

pub fn not_grantable(name: &str) -> SqlError {
    SqlError::new("0A000", format!("diffmart grants only {READ_ALL_DATA} and {WRITE_ALL_DATA}, not \"{name}\""))
}

fn save(path: &Path, roles: &BTreeMap<String, Role>) -> anyhow::Result<()> {
    let bytes = serde_json::to_vec_pretty(&RolesFile { roles: roles.clone() })?;
    write_atomically_with(path, |file| {
        restrict_to_owner(file.get_ref())?;
        file.write_all(&bytes)
    })
}

/// Salted passwords are as good as passwords against this server: owner only.
fn restrict_to_owner(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

/// The roles as `pg_catalog.pg_roles` shows them (psql's `\du`).
#[derive(Clone, Debug)]
pub struct CatalogRoles(pub std::sync::Arc<Roles>);

#[async_trait::async_trait]
impl PgCatalogContextProvider for CatalogRoles {
    async fn roles(&self) -> Vec<String> {
        self.0.names()
    }

    async fn role(&self, name: &str) -> Option<CatalogRole> {
        // A role dropped since `roles()` shows as unable to log in, rather than failing the query.
        let role = self.0.get(name).unwrap_or_default();
        let inherited_roles = [(role.read_all_data, READ_ALL_DATA), (role.write_all_data, WRITE_ALL_DATA)]
            .into_iter()
            .filter(|(member, _)| *member)
            .map(|(_, predefined)| predefined.to_string())
            .collect();
        Some(CatalogRole {
            name: name.to_string(),
            is_superuser: role.superuser,
            can_login: role.login,
            can_create_db: false,
            can_create_role: role.superuser,
            can_create_user: role.superuser,
            can_replication: false,
            grants: Vec::new(),
            inherited_roles,
        })
    }
}

mod base64_bytes {
    use super::{BASE64, Deserialize};
    use base64::Engine as _;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&BASE64.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        BASE64.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_password(password: &str) -> RoleOptions {
        RoleOptions { login: Some(true), password: Some(Some(password.to_string())), ..RoleOptions::default() }
    }

    #[test]
    fn roles_survive_a_reopen_without_their_passwords_in_clear() {
        let dir = tempfile::tempdir().unwrap();
        let roles = Roles::open(Some(dir.path()), Some("rootpw")).unwrap();
        roles.create("alice", &with_password("s3cret-pw"), false).unwrap();
        roles.set_membership(READ_ALL_DATA, "alice", true).unwrap();
        let text = std::fs::read_to_string(dir.path().join(ROLES_FILE)).unwrap();
        assert!(!text.contains("s3cret-pw"), "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(ROLES_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        let reopened = Roles::open(Some(dir.path()), Some("rootpw")).unwrap();
        let alice = reopened.get("alice").unwrap();
        assert!(alice.login);
        assert_eq!(alice.access(), Access::Read);
        let secret = alice.password.unwrap();
        assert_eq!(secret.salted_password, gen_salted_password("s3cret-pw", &secret.salt, secret.iterations));
        assert_eq!(reopened.names(), ["alice", "root"]);
    }

    #[test]
    fn a_change_that_fails_changes_nothing() {
        let roles = Roles::open(None, None).unwrap();
        roles.create("bob", &RoleOptions::default(), false).unwrap();
        assert_eq!(roles.create("bob", &RoleOptions::default(), false).unwrap_err().sqlstate, "42710");
        assert!(!roles.create("bob", &RoleOptions::default(), true).unwrap());
        assert_eq!(roles.set_membership("pg_monitor", "bob", true).unwrap_err().sqlstate, "0A000");
        assert_eq!(roles.drop("carol", false).unwrap_err().sqlstate, "42704");
        assert!(!roles.drop("carol", true).unwrap());
        assert_eq!(roles.create("root", &RoleOptions::default(), false).unwrap_err().sqlstate, "42501");
        assert_eq!(roles.create("pg_x", &RoleOptions::default(), false).unwrap_err().sqlstate, "42939");
        assert_eq!(roles.access("bob"), Access::None);
        roles.set_membership(WRITE_ALL_DATA, "bob", true).unwrap();
        assert_eq!(roles.access("bob"), Access::Write);
        assert_eq!(roles.access("nobody"), Access::None);
    }

    #[test]
    fn passwords_are_verified_against_the_stored_secret() {
        let roles = Roles::open(None, Some("rootpw")).unwrap();
        roles.create("alice", &with_password("s3cret-pw"), false).unwrap();
        roles.create("nologin", &RoleOptions { login: Some(false), ..with_password("pw") }, false).unwrap();
        roles.create("nopassword", &RoleOptions { login: Some(true), ..RoleOptions::default() }, false).unwrap();
        assert!(roles.verify_password(ROOT, "rootpw"));
        assert!(!roles.verify_password(ROOT, "rootpw "));
        assert!(roles.verify_password("alice", "s3cret-pw"));
        assert!(!roles.verify_password("alice", "s3cret-PW"));
        assert!(!roles.verify_password("alice", ""));
        assert!(!roles.verify_password("nologin", "pw"));
        assert!(!roles.verify_password("nopassword", ""));
        assert!(!roles.verify_password("nobody", "s3cret-pw"));
        assert!(!Roles::open(None, None).unwrap().verify_password(ROOT, ""));
    }

    #[test]
    fn root_needs_a_password_only_when_one_is_set() {
        assert!(!Roles::open(None, None).unwrap().passwords_required());
        let roles = Roles::open(None, Some("pw")).unwrap();
        assert!(roles.passwords_required());
        assert!(roles.is_superuser(ROOT));
        assert_eq!(roles.access(ROOT), Access::Write);
    }
}
