//! The search part of a CLS query (CQL, `QuerySyntax: 1`) evaluated over one log's fields, for
//! the CLS stand-in. It reads the syntax CLS documents for key-value search
//! (<https://www.tencentcloud.com/document/product/614/37803>): `key:"phrase"`, `key:value`,
//! numeric comparisons `key:>n`, `key:>=n`, `key:<n`, `key:<=n` (as in `status:>400`,
//! <https://www.tencentcloud.com/document/product/614/38736>), `key:*` (the key exists), `*`
//! (every log), `AND`, `OR`, `NOT` (any case; `AND` binds tighter than `OR`) and parentheses.
//! Anything else is a syntax error, as CLS answers it.
//!
//! One simplification, stricter than CLS: a phrase matches a field's whole value, not a run of
//! its tokens. esgflow only searches ids, addresses and type names, where the two agree.

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    And,
    Or,
    Not,
    Star,
    /// `key:` followed by its value.
    Term(String, Value),
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Phrase(String),
    Compare(&'static str, f64),
    Any,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// Every log.
    All,
    /// One key-value condition.
    Term(String, ValueMatch),
    /// Both.
    And(Box<Query>, Box<Query>),
    /// Either.
    Or(Box<Query>, Box<Query>),
    /// Not.
    Not(Box<Query>),
}

/// What a key-value condition asks of the value.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueMatch {
    /// Equal to this text.
    Phrase(String),
    /// A number compared with `>`, `>=`, `<`, `<=` or `=`.
    Compare(&'static str, f64),
    /// Present.
    Any,
}

fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            '*' => {
                out.push(Token::Star);
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"():\"".contains(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if word.is_empty() {
                    return Err(format!("unexpected {:?} at {start}", chars[start]));
                }
                if i < chars.len() && chars[i] == ':' {
                    i += 1;
                    let (value, next) = value(&chars, i)?;
                    i = next;
                    out.push(Token::Term(word, value));
                } else {
                    out.push(match word.to_ascii_uppercase().as_str() {
                        "AND" => Token::And,
                        "OR" => Token::Or,
                        "NOT" => Token::Not,
                        _ => return Err(format!("full-text term {word:?}: esgflow's stand-in only knows key-value search")),
                    });
                }
            }
        }
    }
    Ok(out)
}

fn value(chars: &[char], mut i: usize) -> Result<(Value, usize), String> {
    if chars.get(i) == Some(&'"') {
        let mut phrase = String::new();
        i += 1;
        loop {
            match chars.get(i) {
                None => return Err("unterminated phrase".to_string()),
                Some('\\') => {
                    phrase.extend(chars.get(i + 1));
                    i += 2;
                }
                Some('"') => return Ok((Value::Phrase(phrase), i + 1)),
                Some(c) => {
                    phrase.push(*c);
                    i += 1;
                }
            }
        }
    }
    let start = i;
    while i < chars.len() && !chars[i].is_whitespace() && !"()\"".contains(chars[i]) {
        i += 1;
    }
    let word: String = chars[start..i].iter().collect();
    if word == "*" {
        return Ok((Value::Any, i));
    }
    let (op, number) = [">=", "<=", ">", "<", "="]
        .into_iter()
        .find_map(|op| word.strip_prefix(op).map(|rest| (op, rest)))
        .unwrap_or(("=", word.as_str()));
    match number.parse::<f64>() {
        Ok(n) => Ok((Value::Compare(op, n), i)),
        Err(_) if op == "=" && !word.is_empty() => Ok((Value::Phrase(word.clone()), i)),
        Err(_) => Err(format!("{word:?} is not a value")),
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn or(&mut self) -> Result<Query, String> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.at += 1;
            left = Query::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Query, String> {
        let mut left = self.unary()?;
        loop {
            match self.peek() {
                Some(Token::And) => self.at += 1,
                // Terms side by side are ANDed.
                Some(Token::Term(..) | Token::Open | Token::Not | Token::Star) => {}
                _ => return Ok(left),
            }
            left = Query::And(Box::new(left), Box::new(self.unary()?));
        }
    }

    fn unary(&mut self) -> Result<Query, String> {
        let token = self.peek().cloned();
        self.at += 1;
        match token {
            Some(Token::Not) => Ok(Query::Not(Box::new(self.unary()?))),
            Some(Token::Star) => Ok(Query::All),
            Some(Token::Open) => {
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return Err("unbalanced parenthesis".to_string());
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Term(key, value)) => Ok(Query::Term(
                key,
                match value {
                    Value::Phrase(p) => ValueMatch::Phrase(p),
                    Value::Compare(op, n) => ValueMatch::Compare(op, n),
                    Value::Any => ValueMatch::Any,
                },
            )),
            other => Err(format!("unexpected {other:?}")),
        }
    }
}

impl Query {
    /// Parses the search part of a query (the text before ` | `).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Query::All);
        }
        let mut parser = Parser {
            tokens: tokens(text)?,
            at: 0,
        };
        let query = parser.or()?;
        if parser.at != parser.tokens.len() {
            return Err(format!("unexpected {:?}", parser.tokens[parser.at]));
        }
        Ok(query)
    }

    /// Whether a log with `fields` matches.
    pub fn matches(&self, fields: &BTreeMap<String, String>) -> bool {
        match self {
            Query::All => true,
            Query::And(a, b) => a.matches(fields) && b.matches(fields),
            Query::Or(a, b) => a.matches(fields) || b.matches(fields),
            Query::Not(a) => !a.matches(fields),
            Query::Term(key, value) => {
                let Some(have) = fields.get(key) else {
                    return false;
                };
                match value {
                    ValueMatch::Any => true,
                    ValueMatch::Phrase(p) => have == p,
                    ValueMatch::Compare(op, n) => {
                        have.trim().parse::<f64>().is_ok_and(|v| match *op {
                            ">" => v > *n,
                            ">=" => v >= *n,
                            "<" => v < *n,
                            "<=" => v <= *n,
                            _ => v == *n,
                        })
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn key_value_numbers_and_logic() {
        let l = log(&[
            ("record_type", "block_hit"),
            ("src_ip", "10.0.1.11"),
            ("src_ip_num", "167772427"),
            ("dst_port", "3306"),
        ]);
        for (query, expected) in [
            ("*", true),
            (r#"record_type:"block_hit""#, true),
            ("record_type:block_hit", true),
            (r#"record_type:"observe_hit""#, false),
            (
                r#"(record_type:"observe_hit" OR record_type:"block_hit") AND dst_port:3306"#,
                true,
            ),
            ("src_ip_num:>=167772416 AND src_ip_num:<=167772671", true),
            ("src_ip_num:>167772427", false),
            ("dst_port:<3306 or dst_port:>3306", false),
            ("NOT dst_port:3306", false),
            ("rule_uuid:*", false),
            (r#"record_type:"block_hit" dst_port:3306"#, true),
            (r#"record_type:"block_hit" AND rule_uuid:"7010""#, false),
        ] {
            assert_eq!(
                Query::parse(query).unwrap().matches(&l),
                expected,
                "{query}"
            );
        }
    }

    #[test]
    fn malformed_queries_are_refused() {
        for query in [
            "(a:1",
            "a:1)",
            "a:",
            "a:\"open",
            "plain words",
            "a:1 AND",
            "OR a:1",
        ] {
            assert!(Query::parse(query).is_err(), "{query}");
        }
    }
}
