//! Tokens of the Calico selector language (`libcalico-go/lib/selector/tokenizer`).
//!
//! Whitespace is only space and TAB. Keyword operators (`contains`, `starts with`, `ends with`,
//! `in`, `not in`) are recognised only straight after a label and must end at a word boundary;
//! functions (`has(`, `all(`, `global(`) only where an operand is expected.

use super::ParseError;

/// The longest label accepted (`MaxLabelLength`).
pub const MAX_LABEL_LEN: usize = 512;

/// A token kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `,`
    Comma,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `!`
    Not,
    /// `&&`
    And,
    /// `||`
    Or,
    /// A string literal's content.
    Str(String),
    /// A label.
    Label(String),
    /// `has(label)`
    Has(String),
    /// `all()`
    All,
    /// `global()`
    Global,
    /// `contains`
    Contains,
    /// `starts with`
    StartsWith,
    /// `ends with`
    EndsWith,
    /// `in`
    In,
    /// `not in`
    NotIn,
    /// End of input.
    Eof,
}

/// A token and its byte span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Kind.
    pub tok: Tok,
    /// Byte range in the input.
    pub span: std::ops::Range<usize>,
}

fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Splits `input` into tokens, ending with [`Tok::Eof`].
pub fn tokenize(input: &str) -> Result<Vec<Token>, ParseError> {
    let b = input.as_bytes();
    let mut out: Vec<Token> = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && is_ws(b[i]) {
            i += 1;
        }
        if i >= b.len() {
            out.push(Token {
                tok: Tok::Eof,
                span: i..i,
            });
            return Ok(out);
        }
        let start = i;
        let after_label = matches!(
            out.last(),
            Some(Token {
                tok: Tok::Label(_),
                ..
            })
        );
        let (tok, end) = match b[i] {
            b'(' => (Tok::LParen, i + 1),
            b')' => (Tok::RParen, i + 1),
            b'{' => (Tok::LBrace, i + 1),
            b'}' => (Tok::RBrace, i + 1),
            b',' => (Tok::Comma, i + 1),
            b'!' if b.get(i + 1) == Some(&b'=') => (Tok::Ne, i + 2),
            b'!' => (Tok::Not, i + 1),
            b'=' if b.get(i + 1) == Some(&b'=') => (Tok::Eq, i + 2),
            b'=' => return Err(ParseError::new(input, "expected ==", i..i + 1)),
            b'&' if b.get(i + 1) == Some(&b'&') => (Tok::And, i + 2),
            b'&' => return Err(ParseError::new(input, "expected &&", i..i + 1)),
            b'|' if b.get(i + 1) == Some(&b'|') => (Tok::Or, i + 2),
            b'|' => return Err(ParseError::new(input, "expected ||", i..i + 1)),
            q @ (b'"' | b'\'') => match input[i + 1..].find(q as char) {
                Some(len) => (Tok::Str(input[i + 1..i + 1 + len].to_owned()), i + 2 + len),
                None => {
                    return Err(ParseError::new(
                        input,
                        "unterminated string literal",
                        i..b.len(),
                    ));
                }
            },
            c if is_label_byte(c) && after_label => keyword(input, i)?,
            c if is_label_byte(c) => operand(input, i)?,
            _ => {
                let ch_len = input[i..].chars().next().map_or(1, char::len_utf8);
                return Err(ParseError::new(
                    input,
                    "unexpected character",
                    i..i + ch_len,
                ));
            }
        };
        out.push(Token {
            tok,
            span: start..end,
        });
        i = end;
    }
}

/// Reads a run of label bytes starting at `i`; returns its end.
fn label_end(b: &[u8], i: usize) -> usize {
    let mut j = i;
    while j < b.len() && is_label_byte(b[j]) {
        j += 1;
    }
    j
}

/// After a label: one of the keyword operators, ending at a word boundary.
fn keyword(input: &str, i: usize) -> Result<(Tok, usize), ParseError> {
    let b = input.as_bytes();
    let word = |at: usize, w: &str| -> Option<usize> {
        let end = at + w.len();
        (input.get(at..end) == Some(w) && !b.get(end).is_some_and(|c| is_label_byte(*c)))
            .then_some(end)
    };
    // `starts`/`ends`/`not`, optional whitespace, then `with`/`in`.
    let two = |first: &str, second: &str| -> Option<usize> {
        let mut j = i + first.len();
        if input.get(i..j) != Some(first) {
            return None;
        }
        while j < b.len() && is_ws(b[j]) {
            j += 1;
        }
        word(j, second)
    };
    let found = word(i, "contains")
        .map(|e| (Tok::Contains, e))
        .or_else(|| two("starts", "with").map(|e| (Tok::StartsWith, e)))
        .or_else(|| two("ends", "with").map(|e| (Tok::EndsWith, e)))
        .or_else(|| two("not", "in").map(|e| (Tok::NotIn, e)))
        .or_else(|| word(i, "in").map(|e| (Tok::In, e)));
    found.ok_or_else(|| ParseError::new(input, "expected operator after label", i..label_end(b, i)))
}

/// Where an operand is expected: `has(label)`, `all()`, `global()`, or a label.
fn operand(input: &str, i: usize) -> Result<(Tok, usize), ParseError> {
    let b = input.as_bytes();
    let skip_ws = |mut j: usize| {
        while j < b.len() && is_ws(b[j]) {
            j += 1;
        }
        j
    };
    if input[i..].starts_with("has(") {
        let l = skip_ws(i + 4);
        let le = label_end(b, l);
        if le == l {
            return Err(ParseError::new(
                input,
                "expected label in has()",
                i..(l + 1).min(b.len()),
            ));
        }
        check_label_len(input, l, le)?;
        let close = skip_ws(le);
        if b.get(close) != Some(&b')') {
            return Err(ParseError::new(
                input,
                "expected ) after has(label",
                i..close,
            ));
        }
        return Ok((Tok::Has(input[l..le].to_owned()), close + 1));
    }
    for (name, tok) in [("all(", Tok::All), ("global(", Tok::Global)] {
        if input[i..].starts_with(name) {
            let close = skip_ws(i + name.len());
            if b.get(close) != Some(&b')') {
                return Err(ParseError::new(
                    input,
                    format!("expected ) after {name}"),
                    i..close,
                ));
            }
            return Ok((tok, close + 1));
        }
    }
    let end = label_end(b, i);
    check_label_len(input, i, end)?;
    Ok((Tok::Label(input[i..end].to_owned()), end))
}

fn check_label_len(input: &str, start: usize, end: usize) -> Result<(), ParseError> {
    if end - start > MAX_LABEL_LEN {
        return Err(ParseError::new(
            input,
            format!("label is longer than {MAX_LABEL_LEN} characters"),
            start..end,
        ));
    }
    Ok(())
}
