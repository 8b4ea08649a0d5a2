//! `COPY rel [(col, …)] FROM STDIN [WITH] (FORMAT text|csv, HEADER, NULL 'x', DELIMITER
//! 'c', QUOTE 'q', ESCAPE 'e')`, and the pre-9.0 spelling psql's `\copy` passes on
//! (`COPY rel FROM STDIN CSV HEADER`, `DELIMITER ','`, `NULL 'x'`), read into a
//! relation name, a column list and checked [`Options`].

use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName, Statement,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::CopyError;
use super::format::{Format, Options};

/// A `COPY … FROM STDIN`, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct CopyFromStdin {
    /// The relation's name as written, qualifiers included, each part as SQL resolves it.
    pub relation: Vec<String>,
    /// The columns the data holds, in order; empty for all of them.
    pub columns: Vec<String>,
    pub options: Options,
}

impl CopyFromStdin {
    /// `None` unless `sql` is one `COPY … FROM STDIN`; then the statement, or why it is
    /// refused (options PostgreSQL refuses, formats diffmart does not take).
    pub fn parse(sql: &str) -> Option<Result<CopyFromStdin, CopyError>> {
        let start = sql.trim_start();
        if !start.get(..4).is_some_and(|word| word.eq_ignore_ascii_case("copy")) {
            return None;
        }
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
        let [Statement::Copy { source, to: false, target: CopyTarget::Stdin, options, legacy_options, values }] =
            statements.as_slice()
        else {
            return None;
        };
        let CopySource::Table { table_name, columns } = source else { return None };
        if !values.is_empty() {
            return Some(Err(CopyError::new(
                "0A000",
                "COPY data inline in the query text is not supported; send it as COPY data (psql's \\copy)",
            )));
        }
        Some(read_options(options, legacy_options).map(|options| CopyFromStdin {
            relation: name_parts(table_name),
            columns: columns.iter().map(resolved).collect(),
            options,
        }))
    }
}

/// An identifier as SQL resolves it: unquoted ones fold to lower case.
fn resolved(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

fn name_parts(name: &ObjectName) -> Vec<String> {
    name.0.iter().map(|part| part.as_ident().map(resolved).unwrap_or_else(|| part.to_string())).collect()
}

/// The options, checked as PostgreSQL checks them.
fn read_options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<Options, CopyError> {
    let mut format = Format::Text;
    let (mut delimiter, mut null, mut header, mut quote, mut escape) = (None, None, false, None, None);
    for option in options {
        match option {
            CopyOption::Format(name) => {
                format = match name.value.to_ascii_lowercase().as_str() {
                    "text" => Format::Text,
                    "csv" => Format::Csv,
                    "binary" => return Err(not_supported("COPY FORMAT binary; use text or csv")),
                    other => return Err(CopyError::new("22023", format!("COPY format \"{other}\" not recognized"))),
                }
            }
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(text) => null = Some(text.clone()),
            CopyOption::Header(on) => header = *on,
            CopyOption::Quote(c) => quote = Some(*c),
            CopyOption::Escape(c) => escape = Some(*c),
            CopyOption::Freeze(_) => {}
            CopyOption::Encoding(name) if is_utf8(name) => {}
            other => return Err(not_supported(&format!("COPY option {other}"))),
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Csv(csv) => {
                format = Format::Csv;
                for option in csv {
                    match option {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(c) => quote = Some(*c),
                        CopyLegacyCsvOption::Escape(c) => escape = Some(*c),
                        other => return Err(not_supported(&format!("COPY option {other}"))),
                    }
                }
            }
            CopyLegacyOption::Header => header = true,
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(text) => null = Some(text.clone()),
            CopyLegacyOption::Binary => return Err(not_supported("COPY BINARY; use text or csv")),
            other => return Err(not_supported(&format!("COPY option {other}"))),
        }
    }
    let mut checked = Options::defaults(format);
    checked.header = header;
    if let Some(c) = delimiter {
        checked.delimiter = one_byte(c, "delimiter")?;
    }
    if let Some(text) = null {
        checked.null = text.into_bytes();
    }
    if format == Format::Text && (quote.is_some() || escape.is_some()) {
        let which = if quote.is_some() { "quote" } else { "escape" };
        return Err(not_supported(&format!("COPY {which} available only in CSV mode")));
    }
    if let Some(c) = quote {
        checked.quote = one_byte(c, "quote")?;
        checked.escape = checked.quote;
    }
    if let Some(c) = escape {
        checked.escape = one_byte(c, "escape")?;
    }
    if matches!(checked.delimiter, b'\r' | b'\n') || (format == Format::Text && checked.delimiter == b'\\') {
        return Err(CopyError::new("22023", "COPY delimiter cannot be newline, carriage return or backslash"));
    }
    if format == Format::Csv && checked.delimiter == checked.quote {
        return Err(CopyError::new("22023", "COPY delimiter and quote must be different"));
    }
    if checked.null.contains(&checked.delimiter) {
        return Err(CopyError::new("22023", "COPY delimiter must not appear in the NULL specification"));
    }
    Ok(checked)
}

fn is_utf8(name: &str) -> bool {
    matches!(name.to_ascii_lowercase().replace(['-', '_'], "").as_str(), "utf8" | "unicode")
}

fn one_byte(c: char, what: &str) -> Result<u8, CopyError> {
    u8::try_from(c)
        .ok()
        .filter(u8::is_ascii)
        .ok_or_else(|| CopyError::new("0A000", format!("COPY {what} must be a single one-byte character")))
}

fn not_supported(what: &str) -> CopyError {
    CopyError::new("0A000", format!("{what} is not supported"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> CopyFromStdin {
        CopyFromStdin::parse(sql).expect("a COPY FROM STDIN").expect("accepted")
    }

    #[test]
    fn modern_and_legacy_spellings() {
        let copy =
            parsed("COPY public.Orders (order_id, \"Note\") FROM STDIN WITH (FORMAT csv, HEADER true, NULL 'NA')");
        assert_eq!(copy.relation, vec!["public", "orders"]);
        assert_eq!(copy.columns, vec!["order_id", "Note"]);
        assert_eq!(copy.options.format, Format::Csv);
        assert!(copy.options.header);
        assert_eq!(copy.options.null, b"NA");
        // What psql sends for `\copy orders FROM 'orders.csv' CSV HEADER`.
        let legacy = parsed("COPY  orders FROM STDIN CSV HEADER");
        assert_eq!((legacy.options.format, legacy.options.header, legacy.options.delimiter), (Format::Csv, true, b','));
        let text = parsed("copy web_clicks from stdin with delimiter '|' null ''");
        assert_eq!((text.options.format, text.options.delimiter, text.options.null.len()), (Format::Text, b'|', 0));
        let quoted = parsed("COPY t FROM STDIN (FORMAT csv, QUOTE '''', ESCAPE '\\')");
        assert_eq!((quoted.options.quote, quoted.options.escape), (b'\'', b'\\'));
    }

    #[test]
    fn other_statements_and_refused_options() {
        assert_eq!(CopyFromStdin::parse("SELECT 1"), None);
        assert_eq!(CopyFromStdin::parse("COPY t TO STDOUT"), None);
        assert_eq!(CopyFromStdin::parse("COPY t FROM '/etc/passwd'"), None);
        let refused = |sql: &str| CopyFromStdin::parse(sql).expect("a COPY FROM STDIN").unwrap_err().sqlstate;
        assert_eq!(refused("COPY t FROM STDIN (FORMAT binary)"), "0A000");
        assert_eq!(refused("COPY t FROM STDIN (FORMAT text, QUOTE '\"')"), "0A000");
        assert_eq!(refused("COPY t FROM STDIN (FORMAT csv, DELIMITER '\"')"), "22023");
        assert_eq!(refused("COPY t FROM STDIN (FORMAT yaml)"), "22023");
    }
}
