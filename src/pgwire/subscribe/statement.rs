//! The statements of SUBSCRIBE, as Materialize spells them:
//!
//! ```sql
//! SUBSCRIBE [TO] relation | (SELECT …) [WITH (SNAPSHOT [= bool], PROGRESS [= bool])] [AS OF [AT LEAST] t]
//! COPY (SUBSCRIBE …) TO STDOUT
//! DECLARE c CURSOR [WITHOUT HOLD] FOR SUBSCRIBE …
//! FETCH [FORWARD] [n | ALL] [FROM | IN] c [WITH (timeout = '1s')]
//! CLOSE c
//! ```
//!
//! `FETCH` and `CLOSE` are this module's only when they name a SUBSCRIBE cursor;
//! the session decides that ([`super::cursors`]).

use std::time::Duration;

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;
use diffmart_dataflows::Time;

use crate::engine::SqlError;
use crate::pgwire::limits::parse_timeout;
use crate::pgwire::sql_text::{StatementText, keyword_of};

/// What a SUBSCRIBE follows and how.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscribe {
    pub target: Target,
    /// Emit the rows at the start first (default true).
    pub snapshot: bool,
    /// Emit a row per time the subscription has moved past (default false).
    pub progress: bool,
    pub as_of: Option<AsOf>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A relation, by name.
    Relation(String),
    /// A query, as written between its parentheses.
    Query(String),
}

/// `AS OF t`: start at time `t` exactly; `AS OF AT LEAST t`: at `t` or later.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AsOf {
    pub time: Time,
    pub at_least: bool,
}

/// A statement of this module.
#[derive(Debug, PartialEq)]
pub enum SubscribeStatement {
    /// `SUBSCRIBE …` or `COPY (SUBSCRIBE …) TO STDOUT`: rows streamed as COPY data.
    Copy(Subscribe),
    Declare {
        cursor: String,
        subscribe: Subscribe,
    },
    Fetch(Fetch),
    Close {
        /// `None`: `CLOSE ALL`.
        cursor: Option<String>,
    },
}

/// `FETCH` from a cursor.
#[derive(Debug, PartialEq)]
pub struct Fetch {
    pub cursor: String,
    /// `None`: `ALL`.
    pub count: Option<usize>,
    /// How long to wait for a first row; `None`: until one comes. Zero: not at all.
    pub timeout: Option<Duration>,
}

impl SubscribeStatement {
    /// The statement if it is one of this module's (`FETCH` and `CLOSE` of any
    /// cursor: the caller checks the cursor's kind); `Some(Err)` when it is one and
    /// is malformed.
    pub fn parse(statement: &StatementText<'_>) -> Option<Result<SubscribeStatement, SqlError>> {
        let mut tokens = Tokens { statement, at: 0 };
        if tokens.word_is(0, "subscribe") {
            return Some(parse_subscribe(&mut tokens).and_then(|s| tokens.end().map(|()| Self::Copy(s))));
        }
        match statement.keyword(0) {
            Keyword::COPY
                if matches!(statement.tokens.get(1), Some((Token::LParen, _))) && tokens.word_is(2, "subscribe") =>
            {
                Some(parse_copy(&mut tokens))
            }
            Keyword::DECLARE if declares_subscribe(statement) => Some(parse_declare(&mut tokens)),
            // A FETCH this grammar does not read (PRIOR, ABSOLUTE …) is DataFusion's,
            // unless it has options, which only a SUBSCRIBE cursor takes.
            Keyword::FETCH => match parse_fetch(&mut tokens) {
                Ok(fetch) => Some(Ok(Self::Fetch(fetch))),
                Err(e) => (0..statement.tokens.len()).any(|i| statement.keyword(i) == Keyword::WITH).then_some(Err(e)),
            },
            Keyword::CLOSE => parse_close(&mut tokens).ok().map(Ok),
            _ => None,
        }
    }
}

/// `DECLARE c CURSOR … FOR SUBSCRIBE`: a SUBSCRIBE follows FOR.
fn declares_subscribe(statement: &StatementText<'_>) -> bool {
    let tokens = Tokens { statement, at: 0 };
    (0..statement.tokens.len()).any(|i| statement.keyword(i) == Keyword::FOR && tokens.word_is(i + 1, "subscribe"))
}

/// A cursor over a statement's tokens.
struct Tokens<'s, 'a> {
    statement: &'s StatementText<'a>,
    at: usize,
}

fn syntax(message: impl std::fmt::Display) -> SqlError {
    SqlError::new("42601", format!("syntax error: {message}"))
}

impl Tokens<'_, '_> {
    fn peek(&self) -> Option<&Token> {
        self.statement.tokens.get(self.at).map(|(t, _)| t)
    }
    fn keyword(&self) -> Keyword {
        keyword_of(self.peek())
    }
    /// Whether token `i` is the unquoted word `word` (any case): for words sqlparser
    /// does not know as keywords.
    fn word_is(&self, i: usize, word: &str) -> bool {
        matches!(self.statement.tokens.get(i), Some((Token::Word(w), _)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    }
    fn next(&mut self) -> Option<Token> {
        let token = self.peek().cloned();
        self.at += 1;
        token
    }
    fn done(&self) -> bool {
        self.at >= self.statement.tokens.len()
    }
    /// Takes the keyword if it is next.
    fn take(&mut self, keyword: Keyword) -> bool {
        let found = self.keyword() == keyword;
        if found {
            self.at += 1;
        }
        found
    }
    fn take_word(&mut self, word: &str) -> bool {
        let found = self.word_is(self.at, word);
        if found {
            self.at += 1;
        }
        found
    }
    fn expect(&mut self, keyword: Keyword, what: &str) -> Result<(), SqlError> {
        if self.take(keyword) { Ok(()) } else { Err(syntax(format!("expected {what} at {}", self.here()))) }
    }
    fn expect_token(&mut self, token: Token, what: &str) -> Result<(), SqlError> {
        if self.peek() == Some(&token) {
            self.at += 1;
            Ok(())
        } else {
            Err(syntax(format!("expected {what} at {}", self.here())))
        }
    }
    /// What is at the cursor, for error messages.
    fn here(&self) -> String {
        match self.peek() {
            Some(token) => format!("\"{token}\""),
            None => "the end".into(),
        }
    }
    fn end(&self) -> Result<(), SqlError> {
        if self.done() { Ok(()) } else { Err(syntax(format!("unexpected {}", self.here()))) }
    }
    /// A name: an identifier, unquoted ones folded to lower case; a qualified name's
    /// schema must be `public` (the only one).
    fn name(&mut self, what: &str) -> Result<String, SqlError> {
        let mut name = self.identifier(what)?;
        while self.peek() == Some(&Token::Period) {
            self.at += 1;
            if name != "public" && name != crate::pgwire::DATABASE {
                return Err(SqlError::new("3F000", format!("schema \"{name}\" does not exist")));
            }
            name = self.identifier(what)?;
        }
        Ok(name)
    }
    fn identifier(&mut self, what: &str) -> Result<String, SqlError> {
        match self.next() {
            Some(Token::Word(w)) if w.quote_style.is_some() => Ok(w.value),
            Some(Token::Word(w)) => Ok(w.value.to_lowercase()),
            _ => {
                self.at -= 1;
                Err(syntax(format!("expected {what} at {}", self.here())))
            }
        }
    }
    fn number(&mut self, what: &str) -> Result<u64, SqlError> {
        match self.next() {
            Some(Token::Number(n, _)) => {
                n.parse().map_err(|_| syntax(format!("{what} must be a whole number, not {n}")))
            }
            _ => {
                self.at -= 1;
                Err(syntax(format!("expected {what} at {}", self.here())))
            }
        }
    }
    /// The text between the parenthesis at the cursor and its match, and moves past it.
    fn parenthesized(&mut self) -> Result<&str, SqlError> {
        let open = self.at;
        self.expect_token(Token::LParen, "(")?;
        let mut depth = 1;
        while let Some(token) = self.next() {
            match token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        let tokens = &self.statement.tokens;
                        let (start, end) = (tokens[open].1.end, tokens[self.at - 1].1.start);
                        return Ok(&self.statement.text[start..end]);
                    }
                }
                _ => {}
            }
        }
        Err(syntax("unbalanced parentheses"))
    }
}

/// `SUBSCRIBE …`, the cursor at `SUBSCRIBE`; stops at the end of the statement, or
/// at a `)` that closes an enclosing `COPY (`.
fn parse_subscribe(tokens: &mut Tokens<'_, '_>) -> Result<Subscribe, SqlError> {
    if !tokens.take_word("subscribe") {
        return Err(syntax("expected SUBSCRIBE"));
    }
    tokens.take(Keyword::TO);
    let target = if tokens.peek() == Some(&Token::LParen) {
        let query = tokens.parenthesized()?.trim().to_string();
        if query.is_empty() {
            return Err(syntax("SUBSCRIBE () needs a query"));
        }
        Target::Query(query)
    } else {
        Target::Relation(tokens.name("a relation or a parenthesized query")?)
    };
    let mut subscribe = Subscribe { target, snapshot: true, progress: false, as_of: None };
    if tokens.take(Keyword::WITH) {
        tokens.expect_token(Token::LParen, "( after WITH")?;
        loop {
            let option = tokens.identifier("an option")?;
            let value = if tokens.peek() == Some(&Token::Eq) {
                tokens.at += 1;
                boolean(tokens, &option)?
            } else if matches!(tokens.keyword(), Keyword::TRUE | Keyword::FALSE) {
                boolean(tokens, &option)?
            } else {
                true
            };
            match option.as_str() {
                "snapshot" => subscribe.snapshot = value,
                "progress" => subscribe.progress = value,
                other => {
                    return Err(SqlError::new(
                        "22023",
                        format!("SUBSCRIBE has no option \"{other}\" (SNAPSHOT and PROGRESS are its options)"),
                    ));
                }
            }
            if tokens.peek() == Some(&Token::Comma) {
                tokens.at += 1;
                continue;
            }
            tokens.expect_token(Token::RParen, ") or , in WITH (…)")?;
            break;
        }
    }
    if tokens.take(Keyword::AS) {
        tokens.expect(Keyword::OF, "OF after AS")?;
        let at_least = tokens.take(Keyword::AT);
        if at_least {
            tokens.expect(Keyword::LEAST, "LEAST after AS OF AT")?;
        }
        subscribe.as_of = Some(AsOf { time: tokens.number("a time after AS OF")?, at_least });
    }
    if tokens.word_is(tokens.at, "up") {
        return Err(SqlError::new("0A000", "SUBSCRIBE … UP TO is not supported"));
    }
    Ok(subscribe)
}

/// The value of a boolean option after its name (and `=`).
fn boolean(tokens: &mut Tokens<'_, '_>, option: &str) -> Result<bool, SqlError> {
    match tokens.next() {
        Some(Token::Word(w)) if w.keyword == Keyword::TRUE || w.value.eq_ignore_ascii_case("on") => Ok(true),
        Some(Token::Word(w)) if w.keyword == Keyword::FALSE || w.value.eq_ignore_ascii_case("off") => Ok(false),
        Some(Token::SingleQuotedString(s)) if ["true", "on", "t"].contains(&s.to_lowercase().as_str()) => Ok(true),
        Some(Token::SingleQuotedString(s)) if ["false", "off", "f"].contains(&s.to_lowercase().as_str()) => Ok(false),
        _ => Err(SqlError::new("22023", format!("{option} requires a Boolean value"))),
    }
}

fn parse_copy(tokens: &mut Tokens<'_, '_>) -> Result<SubscribeStatement, SqlError> {
    tokens.expect(Keyword::COPY, "COPY")?;
    tokens.expect_token(Token::LParen, "(")?;
    let subscribe = parse_subscribe(tokens)?;
    tokens.expect_token(Token::RParen, ") after the SUBSCRIBE")?;
    tokens.expect(Keyword::TO, "TO STDOUT")?;
    if !tokens.take(Keyword::STDOUT) {
        return Err(SqlError::new("0A000", "COPY (SUBSCRIBE …) goes TO STDOUT only"));
    }
    if tokens.take(Keyword::WITH) {
        let options = tokens.parenthesized()?.trim().to_lowercase();
        let words: Vec<&str> = options.split_whitespace().collect();
        if !matches!(words.as_slice(), ["format", "text"] | ["format", "'text'"]) {
            return Err(SqlError::new(
                "0A000",
                format!("COPY (SUBSCRIBE …) supports only FORMAT text, not ({options})"),
            ));
        }
    }
    tokens.end()?;
    Ok(SubscribeStatement::Copy(subscribe))
}

fn parse_declare(tokens: &mut Tokens<'_, '_>) -> Result<SubscribeStatement, SqlError> {
    tokens.expect(Keyword::DECLARE, "DECLARE")?;
    let cursor = tokens.identifier("a cursor name")?;
    // PostgreSQL's cursor options; a SUBSCRIBE cursor is read forward, in the transaction.
    loop {
        match tokens.keyword() {
            Keyword::NO if tokens.word_is(tokens.at + 1, "scroll") => tokens.at += 2,
            Keyword::BINARY => return Err(SqlError::new("0A000", "a SUBSCRIBE cursor is not BINARY")),
            Keyword::INSENSITIVE | Keyword::ASENSITIVE => tokens.at += 1,
            Keyword::SCROLL => return Err(SqlError::new("0A000", "a SUBSCRIBE cursor reads forward only (no SCROLL)")),
            _ => break,
        }
    }
    tokens.expect(Keyword::CURSOR, "CURSOR")?;
    if tokens.take(Keyword::WITH) {
        return Err(SqlError::new("0A000", "a SUBSCRIBE cursor cannot be held WITH HOLD"));
    }
    if tokens.take(Keyword::WITHOUT) {
        tokens.expect(Keyword::HOLD, "HOLD after WITHOUT")?;
    }
    tokens.expect(Keyword::FOR, "FOR")?;
    let subscribe = parse_subscribe(tokens)?;
    tokens.end()?;
    Ok(SubscribeStatement::Declare { cursor, subscribe })
}

fn parse_fetch(tokens: &mut Tokens<'_, '_>) -> Result<Fetch, SqlError> {
    tokens.expect(Keyword::FETCH, "FETCH")?;
    let _ = tokens.take(Keyword::FORWARD) || tokens.take(Keyword::NEXT);
    let count = if tokens.take(Keyword::ALL) {
        None
    } else if matches!(tokens.peek(), Some(Token::Number(..))) {
        Some(usize::try_from(tokens.number("a row count")?).unwrap_or(usize::MAX))
    } else {
        Some(1)
    };
    let _ = tokens.take(Keyword::FROM) || tokens.take(Keyword::IN);
    let cursor = tokens.identifier("a cursor name")?;
    let mut timeout = None;
    if tokens.take(Keyword::WITH) {
        tokens.expect_token(Token::LParen, "( after WITH")?;
        let option = tokens.identifier("an option")?;
        if option != "timeout" {
            return Err(SqlError::new("22023", format!("FETCH has no option \"{option}\" (TIMEOUT is its option)")));
        }
        if tokens.peek() == Some(&Token::Eq) {
            tokens.at += 1;
        }
        let value = match tokens.next() {
            Some(Token::SingleQuotedString(s)) => s,
            Some(Token::Number(n, _)) => format!("{n}s"),
            _ => return Err(SqlError::new("22023", "TIMEOUT requires an interval, e.g. '1s'")),
        };
        let waited = parse_interval(&value)?;
        timeout = Some(waited);
        tokens.expect_token(Token::RParen, ")")?;
    }
    tokens.end()?;
    Ok(Fetch { cursor, count, timeout })
}

/// An interval as FETCH's TIMEOUT takes it: `'1s'`, `'250ms'`, `'2 seconds'`, `'0'`.
fn parse_interval(text: &str) -> Result<Duration, SqlError> {
    let normalized = text.trim().to_lowercase();
    let compact: String = normalized.split_whitespace().collect();
    let compact = ["seconds", "second", "secs", "sec"]
        .iter()
        .find_map(|long| compact.strip_suffix(long).map(|n| format!("{n}s")))
        .or_else(|| {
            ["milliseconds", "millisecond", "msecs"]
                .iter()
                .find_map(|l| compact.strip_suffix(l).map(|n| format!("{n}ms")))
        })
        .or_else(|| {
            ["minutes", "minute", "mins"].iter().find_map(|l| compact.strip_suffix(l).map(|n| format!("{n}min")))
        })
        .unwrap_or(compact);
    // A bare number is seconds here (an interval), not statement_timeout's milliseconds.
    let with_unit =
        if compact.chars().all(|c| c.is_ascii_digit() || c == '.') { format!("{compact}s") } else { compact };
    parse_timeout(&with_unit)
        .map(|d| d.unwrap_or(Duration::ZERO))
        .map_err(|_| SqlError::new("22007", format!("invalid TIMEOUT interval {text:?} (e.g. '1s', '500ms')")))
}

fn parse_close(tokens: &mut Tokens<'_, '_>) -> Result<SubscribeStatement, SqlError> {
    tokens.expect(Keyword::CLOSE, "CLOSE")?;
    if tokens.take(Keyword::ALL) {
        tokens.end()?;
        return Ok(SubscribeStatement::Close { cursor: None });
    }
    let cursor = tokens.identifier("a cursor name")?;
    tokens.end()?;
    Ok(SubscribeStatement::Close { cursor: Some(cursor) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> Result<SubscribeStatement, SqlError> {
        SubscribeStatement::parse(&StatementText::new(sql).unwrap()).expect("one of ours")
    }

    fn relation(name: &str) -> Subscribe {
        Subscribe { target: Target::Relation(name.into()), snapshot: true, progress: false, as_of: None }
    }

    #[test]
    fn subscribe_statements_parse_as_materialize_spells_them() {
        assert_eq!(parsed("SUBSCRIBE sales_profit").unwrap(), SubscribeStatement::Copy(relation("sales_profit")));
        assert_eq!(parsed("subscribe to public.\"Mixed\";").unwrap(), SubscribeStatement::Copy(relation("Mixed")));
        let full = parsed(
            "COPY (SUBSCRIBE (SELECT a, (b) FROM t WHERE c = ')') WITH (SNAPSHOT = false, PROGRESS) AS OF AT LEAST 42) TO STDOUT",
        )
        .unwrap();
        assert_eq!(
            full,
            SubscribeStatement::Copy(Subscribe {
                target: Target::Query("SELECT a, (b) FROM t WHERE c = ')'".into()),
                snapshot: false,
                progress: true,
                as_of: Some(AsOf { time: 42, at_least: true }),
            })
        );
        assert_eq!(
            parsed("DECLARE c CURSOR FOR SUBSCRIBE x WITH (progress true)").unwrap(),
            SubscribeStatement::Declare {
                cursor: "c".into(),
                subscribe: Subscribe { progress: true, ..relation("x") }
            }
        );
        assert_eq!(
            parsed("FETCH 100 c WITH (timeout = '1s')").unwrap(),
            SubscribeStatement::Fetch(Fetch {
                cursor: "c".into(),
                count: Some(100),
                timeout: Some(Duration::from_secs(1))
            })
        );
        assert_eq!(
            parsed("fetch all from c with (timeout='0s')").unwrap(),
            SubscribeStatement::Fetch(Fetch { cursor: "c".into(), count: None, timeout: Some(Duration::ZERO) })
        );
        assert_eq!(
            parsed("FETCH c").unwrap(),
            SubscribeStatement::Fetch(Fetch { cursor: "c".into(), count: Some(1), timeout: None })
        );
        assert_eq!(parsed("CLOSE c").unwrap(), SubscribeStatement::Close { cursor: Some("c".into()) });
        // DECLARE of a query is DataFusion's.
        assert!(SubscribeStatement::parse(&StatementText::new("DECLARE c CURSOR FOR SELECT 1").unwrap()).is_none());
        assert!(SubscribeStatement::parse(&StatementText::new("SELECT 1").unwrap()).is_none());
    }

    #[test]
    fn malformed_subscribes_say_what_is_wrong() {
        let code = |sql: &str| parsed(sql).unwrap_err().sqlstate;
        assert_eq!(code("SUBSCRIBE"), "42601");
        assert_eq!(code("SUBSCRIBE x WITH (FAST)"), "22023");
        assert_eq!(code("SUBSCRIBE x WITH (SNAPSHOT = 3)"), "22023");
        assert_eq!(code("SUBSCRIBE (SELECT 1"), "42601");
        assert_eq!(code("SUBSCRIBE other.x"), "3F000");
        assert_eq!(code("COPY (SUBSCRIBE x) TO '/tmp/f'"), "0A000");
        assert_eq!(code("FETCH 1 c WITH (timeout = 'soon')"), "22007");
        assert_eq!(code("SUBSCRIBE x AS OF"), "42601");
        assert_eq!(code("SUBSCRIBE x trailing"), "42601");
    }
}
