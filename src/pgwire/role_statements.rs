//! PostgreSQL's role statements, answered by diffmart itself:
//!
//! ```sql
//! CREATE ROLE name [WITH] [LOGIN | NOLOGIN] [SUPERUSER | NOSUPERUSER] [PASSWORD 'pw' | PASSWORD NULL]
//! CREATE USER name …                      -- the same, LOGIN by default
//! ALTER ROLE name [WITH] option …          -- a role may change its own password
//! DROP ROLE [IF EXISTS] name [, …]
//! GRANT pg_read_all_data | pg_write_all_data TO name [, …]
//! REVOKE pg_read_all_data | pg_write_all_data FROM name [, …]
//! ```
//!
//! They are recognised before DataFusion sees the text (its parser does not
//! accept `GRANT role TO role`), in both the simple and the extended protocol.
//! Only superusers run them, except a role changing its own password.

use datafusion::sql::sqlparser::ast::{
    AlterRoleOperation, CreateRole, Expr, Ident, ObjectName, ObjectNamePart, ObjectType, Password, RoleOption,
    Statement, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use pgwire::api::results::Tag;

use super::roles::{READ_ALL_DATA, ROOT, RoleOptions, Roles, WRITE_ALL_DATA, not_grantable};
use super::sql_text::StatementText;
use crate::engine::SqlError;

/// One role statement, parsed.
#[derive(Debug, PartialEq)]
pub enum RoleStatement {
    Create { name: String, options: RoleOptionsSpec, if_not_exists: bool },
    Alter { name: String, options: RoleOptionsSpec },
    Drop { names: Vec<String>, if_exists: bool },
    Grant { predefined: Vec<String>, to: Vec<String> },
    Revoke { predefined: Vec<String>, from: Vec<String> },
}

/// [`RoleOptions`] as written, comparable in tests.
#[derive(Debug, Default, PartialEq)]
pub struct RoleOptionsSpec {
    pub login: Option<bool>,
    pub superuser: Option<bool>,
    pub password: Option<Option<String>>,
}

impl RoleOptionsSpec {
    fn options(&self) -> RoleOptions {
        RoleOptions { login: self.login, superuser: self.superuser, password: self.password.clone() }
    }

    fn only_password(&self) -> bool {
        self.login.is_none() && self.superuser.is_none() && self.password.is_some()
    }
}

impl RoleStatement {
    /// The role statement `sql` is, or `None` when it is not one (then it is DataFusion's).
    pub fn parse(sql: &str) -> Option<Result<RoleStatement, SqlError>> {
        RoleStatement::parse_statement(&StatementText::new(sql)?)
    }

    /// [`RoleStatement::parse`] of a statement already tokenized.
    pub fn parse_statement(statement: &StatementText<'_>) -> Option<Result<RoleStatement, SqlError>> {
        let tokens = statement.token_list();
        match (statement.keyword(0), statement.keyword(1)) {
            (Keyword::CREATE | Keyword::ALTER | Keyword::DROP, Keyword::ROLE | Keyword::USER) => {
                Some(parse_with_sqlparser(statement, statement.keyword(1) == Keyword::USER))
            }
            (Keyword::GRANT, _) => Some(
                parse_membership(&tokens[1..], Keyword::TO)
                    .map(|(predefined, to)| RoleStatement::Grant { predefined, to }),
            ),
            (Keyword::REVOKE, _) => Some(
                parse_membership(&tokens[1..], Keyword::FROM)
                    .map(|(predefined, from)| RoleStatement::Revoke { predefined, from }),
            ),
            _ => None,
        }
    }

    /// Runs the statement as `user`; the command tag psql prints.
    pub fn run(&self, roles: &Roles, user: &str) -> Result<Tag, SqlError> {
        let superuser = roles.is_superuser(user);
        let denied =
            |what: &str| SqlError::new("42501", format!("permission denied to {what}: only superusers manage roles"));
        match self {
            RoleStatement::Create { name, options, if_not_exists } => {
                if !superuser {
                    return Err(denied("create role"));
                }
                if !roles.create(name, &options.options(), *if_not_exists)? {
                    tracing::info!("role \"{name}\" already exists, skipping");
                }
                Ok(Tag::new("CREATE ROLE"))
            }
            RoleStatement::Alter { name, options } => {
                let own_password = name == user && options.only_password();
                if !(superuser || own_password) {
                    return Err(denied("alter role"));
                }
                roles.alter(name, &options.options())?;
                Ok(Tag::new("ALTER ROLE"))
            }
            RoleStatement::Drop { names, if_exists } => {
                if !superuser {
                    return Err(denied("drop role"));
                }
                // root is refused as built in, below, whoever asks.
                if let Some(me) = names.iter().find(|name| *name == user && *name != ROOT) {
                    return Err(SqlError::new("55006", format!("current user \"{me}\" cannot be dropped")));
                }
                for name in names {
                    roles.drop(name, *if_exists)?;
                }
                Ok(Tag::new("DROP ROLE"))
            }
            RoleStatement::Grant { predefined, to } => {
                set_memberships(roles, superuser, predefined, to, true)?;
                Ok(Tag::new("GRANT ROLE"))
            }
            RoleStatement::Revoke { predefined, from } => {
                set_memberships(roles, superuser, predefined, from, false)?;
                Ok(Tag::new("REVOKE ROLE"))
            }
        }
    }
}

fn set_memberships(
    roles: &Roles,
    superuser: bool,
    predefined: &[String],
    members: &[String],
    member: bool,
) -> Result<(), SqlError> {
    if !superuser {
        let verb = if member { "grant" } else { "revoke" };
        return Err(SqlError::new("42501", format!("permission denied to {verb} role \"{}\"", predefined[0])));
    }
    for role in predefined {
        for name in members {
            roles.set_membership(role, name, member)?;
        }
    }
    Ok(())
}

fn unsupported(what: impl std::fmt::Display) -> SqlError {
    SqlError::new("0A000", format!("{what} is not supported"))
}

/// CREATE / ALTER / DROP ROLE (or USER, PostgreSQL's spelling of a role that logs in).
fn parse_with_sqlparser(statement: &StatementText<'_>, user: bool) -> Result<RoleStatement, SqlError> {
    let sql = if user { as_role_statement(statement)? } else { statement.text.to_string() };
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, &sql)
        .map_err(|e| SqlError::new("42601", format!("syntax error: {e}")))?;
    if statements.len() != 1 {
        return Err(SqlError::new("42601", "a role statement must be sent on its own"));
    }
    match statements.remove(0) {
        Statement::CreateRole(create) => parse_create(create, user),
        Statement::AlterRole { name, operation: AlterRoleOperation::WithOptions { options } } => {
            Ok(RoleStatement::Alter { name: ident(&name), options: parse_options(options)? })
        }
        Statement::AlterRole { operation, .. } => Err(unsupported(format!("ALTER ROLE … {operation}"))),
        Statement::Drop { object_type: ObjectType::Role, if_exists, names, cascade, .. } => {
            if cascade {
                return Err(unsupported("DROP ROLE … CASCADE"));
            }
            Ok(RoleStatement::Drop { names: names.iter().map(object_name).collect::<Result<_, _>>()?, if_exists })
        }
        other => Err(unsupported(format!("\"{}\"", first_words(&other.to_string())))),
    }
}

/// `CREATE USER …` → `CREATE ROLE …` (and ALTER/DROP alike): the second word replaced in place.
fn as_role_statement(statement: &StatementText<'_>) -> Result<String, SqlError> {
    let syntax = || SqlError::new("42601", "syntax error: expected CREATE, ALTER or DROP USER");
    let (_, user) =
        statement.tokens.iter().filter(|(token, _)| matches!(token, Token::Word(_))).nth(1).ok_or_else(syntax)?;
    let sql = statement.text;
    Ok(format!("{}ROLE{}", &sql[..user.start], &sql[user.end..]))
}

fn parse_create(create: CreateRole, user: bool) -> Result<RoleStatement, SqlError> {
    let CreateRole {
        names,
        if_not_exists,
        login,
        inherit: _,
        bypassrls,
        password,
        superuser,
        create_db,
        create_role,
        replication,
        connection_limit,
        valid_until,
        in_role,
        in_group,
        role,
        user: users,
        admin,
        authorization_owner,
    } = create;
    let flags =
        [("BYPASSRLS", bypassrls), ("CREATEDB", create_db), ("CREATEROLE", create_role), ("REPLICATION", replication)];
    if let Some((flag, _)) = flags.iter().find(|(_, set)| *set == Some(true)) {
        return Err(unsupported(format!(
            "{flag}; diffmart roles are LOGIN, SUPERUSER and members of {READ_ALL_DATA} or {WRITE_ALL_DATA}"
        )));
    }
    if connection_limit.is_some() || valid_until.is_some() {
        return Err(unsupported("CONNECTION LIMIT and VALID UNTIL"));
    }
    if !(in_role.is_empty() && in_group.is_empty() && role.is_empty() && users.is_empty() && admin.is_empty())
        || authorization_owner.is_some()
    {
        return Err(unsupported(format!("role membership in CREATE ROLE; use GRANT {READ_ALL_DATA} TO name")));
    }
    let [name] = names.as_slice() else {
        return Err(unsupported("creating several roles in one statement"));
    };
    let options = RoleOptionsSpec {
        login: login.or(user.then_some(true)),
        superuser,
        password: password.map(password_text).transpose()?,
    };
    Ok(RoleStatement::Create { name: object_name(name)?, options, if_not_exists })
}

fn parse_options(options: Vec<RoleOption>) -> Result<RoleOptionsSpec, SqlError> {
    let mut spec = RoleOptionsSpec::default();
    for option in options {
        match option {
            RoleOption::Login(login) => spec.login = Some(login),
            RoleOption::SuperUser(superuser) => spec.superuser = Some(superuser),
            RoleOption::Password(password) => spec.password = Some(password_text(password)?),
            other => return Err(unsupported(format!("ALTER ROLE … {other}"))),
        }
    }
    Ok(spec)
}

/// The password as given; PostgreSQL's pre-hashed forms cannot be used for SCRAM here.
fn password_text(password: Password) -> Result<Option<String>, SqlError> {
    match password {
        Password::NullPassword => Ok(None),
        Password::Password(Expr::Value(v)) => match v.value {
            Value::SingleQuotedString(text) | Value::EscapedStringLiteral(text) => usable_password(text).map(Some),
            Value::DollarQuotedString(quoted) => usable_password(quoted.value).map(Some),
            other => Err(SqlError::new("42601", format!("a password must be a string literal, not {other}"))),
        },
        Password::Password(other) => {
            Err(SqlError::new("42601", format!("a password must be a string literal, not {other}")))
        }
    }
}

fn usable_password(text: String) -> Result<String, SqlError> {
    if text.is_empty() {
        return Err(SqlError::new("22023", "a password cannot be empty; use PASSWORD NULL for none"));
    }
    if text.starts_with("SCRAM-SHA-256$") || (text.len() == 35 && text.starts_with("md5")) {
        return Err(unsupported("a pre-hashed password; give the password itself"));
    }
    Ok(text)
}

/// `GRANT a, b TO x, y` or `REVOKE a FROM x`: the granted roles and the grantees.
fn parse_membership(tokens: &[Token], separator: Keyword) -> Result<(Vec<String>, Vec<String>), SqlError> {
    let verb = if separator == Keyword::TO { "GRANT" } else { "REVOKE" };
    let is_keyword = |t: &Token, k: Keyword| matches!(t, Token::Word(w) if w.quote_style.is_none() && w.keyword == k);
    if tokens.iter().any(|t| is_keyword(t, Keyword::ON)) {
        return Err(unsupported(format!(
            "{verb} on objects; diffmart grants reading with {READ_ALL_DATA} and writing with {WRITE_ALL_DATA}"
        )));
    }
    let Some(split) = tokens.iter().position(|t| is_keyword(t, separator)) else {
        return Err(SqlError::new("42601", format!("syntax error: {verb} without {separator:?}")));
    };
    let mut grantees = &tokens[split + 1..];
    if separator == Keyword::FROM
        && let Some(Token::Word(w)) = grantees.last()
        && w.quote_style.is_none()
        && matches!(w.keyword, Keyword::CASCADE | Keyword::RESTRICT)
    {
        grantees = &grantees[..grantees.len() - 1];
    }
    if grantees.first().is_some_and(|t| is_keyword(t, Keyword::GROUP)) {
        grantees = &grantees[1..];
    }
    let predefined = names(&tokens[..split], verb)?;
    if let Some(other) = predefined.iter().find(|name| *name != READ_ALL_DATA && *name != WRITE_ALL_DATA) {
        return Err(not_grantable(other));
    }
    Ok((predefined, names(grantees, verb)?))
}

/// `a, b, "C"`: identifiers, unquoted ones folded to lower case as PostgreSQL does.
fn names(tokens: &[Token], verb: &str) -> Result<Vec<String>, SqlError> {
    let syntax = || SqlError::new("42601", format!("syntax error in {verb}: expected role names separated by commas"));
    let mut names = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        match (i % 2, token) {
            (0, Token::Word(w)) => {
                names.push(if w.quote_style.is_some() { w.value.clone() } else { w.value.to_lowercase() })
            }
            (1, Token::Comma) => {}
            _ => return Err(syntax()),
        }
    }
    if names.is_empty() || tokens.len().is_multiple_of(2) {
        return Err(syntax());
    }
    Ok(names)
}

fn ident(ident: &Ident) -> String {
    if ident.quote_style.is_some() { ident.value.clone() } else { ident.value.to_lowercase() }
}

fn object_name(name: &ObjectName) -> Result<String, SqlError> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(part)] => Ok(ident(part)),
        _ => Err(SqlError::new("42601", format!("\"{name}\" is not a role name"))),
    }
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> RoleStatement {
        RoleStatement::parse(sql).expect("a role statement").unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn refused(sql: &str) -> &'static str {
        RoleStatement::parse(sql).expect("a role statement").unwrap_err().sqlstate
    }

    #[test]
    fn role_statements_parse_as_postgresql_writes_them() {
        assert_eq!(
            parsed("CREATE ROLE Alice WITH LOGIN PASSWORD 'pw';"),
            RoleStatement::Create {
                name: "alice".into(),
                options: RoleOptionsSpec { login: Some(true), superuser: None, password: Some(Some("pw".into())) },
                if_not_exists: false,
            }
        );
        assert_eq!(
            parsed("create user \"Bob\" password 'x'"),
            RoleStatement::Create {
                name: "Bob".into(),
                options: RoleOptionsSpec { login: Some(true), superuser: None, password: Some(Some("x".into())) },
                if_not_exists: false,
            }
        );
        assert_eq!(
            parsed("ALTER ROLE alice PASSWORD NULL NOLOGIN"),
            RoleStatement::Alter {
                name: "alice".into(),
                options: RoleOptionsSpec { login: Some(false), superuser: None, password: Some(None) },
            }
        );
        assert_eq!(
            parsed("DROP ROLE IF EXISTS a, b"),
            RoleStatement::Drop { names: vec!["a".into(), "b".into()], if_exists: true }
        );
        assert_eq!(
            parsed("GRANT pg_read_all_data, PG_WRITE_ALL_DATA TO a, \"B\""),
            RoleStatement::Grant {
                predefined: vec![READ_ALL_DATA.into(), WRITE_ALL_DATA.into()],
                to: vec!["a".into(), "B".into()]
            }
        );
        assert_eq!(
            parsed("revoke pg_write_all_data from a cascade;"),
            RoleStatement::Revoke { predefined: vec![WRITE_ALL_DATA.into()], from: vec!["a".into()] }
        );
    }

    fn texts(sql: &str) -> Vec<&str> {
        crate::pgwire::sql_text::split_statements(sql).iter().map(|s| s.text).collect()
    }

    #[test]
    fn a_simple_query_splits_at_its_own_semicolons_only() {
        assert_eq!(
            texts("CREATE USER a PASSWORD 'x;y''z'; GRANT pg_read_all_data TO a;\n-- done;\n"),
            ["CREATE USER a PASSWORD 'x;y''z'", " GRANT pg_read_all_data TO a"]
        );
        assert_eq!(texts("SELECT 1"), ["SELECT 1"]);
        assert_eq!(
            parsed("CREATE USER \"o'k\" PASSWORD 'it''s';"),
            RoleStatement::Create {
                name: "o'k".into(),
                options: RoleOptionsSpec { login: Some(true), superuser: None, password: Some(Some("it's".into())) },
                if_not_exists: false,
            }
        );
    }

    #[test]
    fn other_statements_are_left_to_datafusion() {
        for sql in ["SELECT 1", "CREATE TABLE t (a int)", "DROP VIEW v", "SET role = 'x'", "ALTER TABLE t ADD c int"] {
            assert!(RoleStatement::parse(sql).is_none(), "{sql}");
        }
    }

    #[test]
    fn what_diffmart_does_not_do_is_refused_clearly() {
        assert_eq!(refused("GRANT SELECT ON orders TO a"), "0A000");
        assert_eq!(refused("GRANT pg_monitor TO a"), "0A000");
        assert_eq!(refused("GRANT pg_read_all_data TO a WITH ADMIN OPTION"), "42601");
        assert_eq!(refused("CREATE ROLE a CREATEDB"), "0A000");
        assert_eq!(refused("CREATE ROLE a PASSWORD 'SCRAM-SHA-256$4096:abc$def:ghi'"), "0A000");
        assert_eq!(refused("CREATE ROLE a PASSWORD ''"), "22023");
        assert_eq!(refused("CREATE ROLE"), "42601");
        assert_eq!(refused("GRANT pg_read_all_data"), "42601");
    }

    #[test]
    fn only_superusers_manage_roles_but_anyone_changes_their_own_password() {
        let roles = Roles::open(None, None).unwrap();
        parsed("CREATE ROLE alice LOGIN PASSWORD 'a'").run(&roles, "root").unwrap();
        parsed("CREATE ROLE bob LOGIN").run(&roles, "root").unwrap();
        assert_eq!(parsed("CREATE ROLE eve").run(&roles, "alice").unwrap_err().sqlstate, "42501");
        assert_eq!(parsed("GRANT pg_write_all_data TO alice").run(&roles, "alice").unwrap_err().sqlstate, "42501");
        assert_eq!(parsed("ALTER ROLE bob PASSWORD 'b'").run(&roles, "alice").unwrap_err().sqlstate, "42501");
        assert_eq!(parsed("ALTER ROLE alice SUPERUSER").run(&roles, "alice").unwrap_err().sqlstate, "42501");
        parsed("ALTER ROLE alice PASSWORD 'new'").run(&roles, "alice").unwrap();
        assert_eq!(parsed("DROP ROLE root").run(&roles, "root").unwrap_err().sqlstate, "42501");
        parsed("GRANT pg_read_all_data TO bob").run(&roles, "root").unwrap();
        assert_eq!(roles.access("bob"), super::super::roles::Access::Read);
        parsed("DROP ROLE bob").run(&roles, "root").unwrap();
        assert!(roles.get("bob").is_none());
    }
}
