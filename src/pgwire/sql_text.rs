//! SQL text as the server's own statements read it (roles, SUBSCRIBE and its cursors),
//! before DataFusion sees the rest: a query split into statements, each with its
//! tokens, tokenized once.

use std::ops::Range;

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// One statement of a query: its text (without the `;` that ends it) and its tokens
/// other than whitespace and comments, each with the byte range it covers in `text`.
#[derive(Debug)]
pub struct StatementText<'a> {
    pub text: &'a str,
    pub tokens: Vec<(Token, Range<usize>)>,
}

impl<'a> StatementText<'a> {
    /// One statement, tokenized; `None` if it does not tokenize.
    pub fn new(text: &'a str) -> Option<StatementText<'a>> {
        let tokens = located_tokens(text)?;
        let mut tokens: Vec<_> = tokens.into_iter().filter(|(t, _)| !matches!(t, Token::Whitespace(_))).collect();
        while matches!(tokens.last(), Some((Token::SemiColon, _))) {
            tokens.pop();
        }
        Some(StatementText { text, tokens })
    }

    /// The unquoted keyword at token `i`, if it is one.
    pub fn keyword(&self, i: usize) -> Keyword {
        keyword_of(self.tokens.get(i).map(|(t, _)| t))
    }

    /// The tokens alone.
    pub fn token_list(&self) -> Vec<Token> {
        self.tokens.iter().map(|(t, _)| t.clone()).collect()
    }
}

/// The unquoted keyword `token` is, if it is one.
pub fn keyword_of(token: Option<&Token>) -> Keyword {
    match token {
        Some(Token::Word(w)) if w.quote_style.is_none() => w.keyword,
        _ => Keyword::NoKeyword,
    }
}

/// Splits `sql` at the semicolons between statements, dropping empty statements. A
/// text that does not tokenize is one statement with no tokens: DataFusion reports
/// what is wrong with it.
pub fn split_statements(sql: &str) -> Vec<StatementText<'_>> {
    let Some(tokens) = located_tokens(sql) else {
        return vec![StatementText { text: sql, tokens: Vec::new() }];
    };
    let mut statements = Vec::new();
    let mut current = StatementText { text: "", tokens: Vec::new() };
    let mut start = 0;
    for (token, range) in tokens {
        match token {
            Token::SemiColon => {
                current.text = &sql[start..range.start];
                statements.push(std::mem::replace(&mut current, StatementText { text: "", tokens: Vec::new() }));
                start = range.end;
            }
            Token::Whitespace(_) => {}
            token => current.tokens.push((token, range.start - start..range.end - start)),
        }
    }
    current.text = &sql[start..];
    statements.push(current);
    statements.retain(|statement| !statement.tokens.is_empty());
    if statements.is_empty() {
        // Only whitespace or comments: still one (empty) query for DataFusion to answer.
        return vec![StatementText { text: sql, tokens: Vec::new() }];
    }
    statements
}

/// Tokens with the byte range each covers in `sql`; `None` if `sql` does not tokenize.
fn located_tokens(sql: &str) -> Option<Vec<(Token, Range<usize>)>> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().ok()?;
    // Locations are (line, column) in characters, both from 1.
    let line_starts: Vec<usize> = std::iter::once(0).chain(sql.match_indices('\n').map(|(i, _)| i + 1)).collect();
    let offset = |line: u64, column: u64| -> Option<usize> {
        let start = *line_starts.get(usize::try_from(line).ok()?.checked_sub(1)?)?;
        let column = usize::try_from(column).ok()?.checked_sub(1)?;
        Some(sql[start..].char_indices().nth(column).map_or(sql.len(), |(i, _)| start + i))
    };
    tokens
        .into_iter()
        .map(|t| {
            let range = offset(t.span.start.line, t.span.start.column)?..offset(t.span.end.line, t.span.end.column)?;
            Some((t.token, range))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_semicolons_outside_strings_and_comments() {
        let sql = "SELECT ';' ; -- a comment; still\n CREATE ROLE a;; SELECT 2";
        let texts: Vec<&str> = split_statements(sql).iter().map(|s| s.text.trim()).collect();
        assert_eq!(texts, vec!["SELECT ';'", "-- a comment; still\n CREATE ROLE a", "SELECT 2"]);
        let second = &split_statements(sql)[1];
        assert_eq!(second.keyword(0), Keyword::CREATE);
        let (_, range) = &second.tokens[2];
        assert_eq!(&second.text[range.clone()], "a");
        assert_eq!(split_statements("  ").len(), 1);
    }
}
