//! Step one: text → tokens (`AppendTokens` in Calico's `tokenizer.go`,
//! reference/calico-selectors.md §1).
//!
//! * Whitespace is only space and TAB; anything else outside a literal is a token or an error.
//! * String literals run to the next identical quote; there are no escapes.
//! * Labels are runs of `[A-Za-z0-9_./-]`, 1 to 512 bytes long.
//! * Keyword operators (`contains`, `starts with`, `ends with`, `not in`, `in`) are recognised
//!   only straight after a label and must end at a word boundary; functions (`has(`, `all(`,
//!   `global(`) only where an operand is expected, with the `(` touching the name.
//!
//! The whole input is tokenized before parsing, as Calico does, so a lexical error wins over a
//! grammatical one earlier in the input.

use std::ops::Range;

use super::ParseError;

/// The longest label accepted (`MaxLabelLength`).
pub(super) const MAX_LABEL_LEN: usize = 512;

/// What a token is; labels and literals borrow from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tok<'a> {
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
    /// A string literal's content, without the quotes.
    Str(&'a str),
    /// A label.
    Label(&'a str),
    /// `has(label)`, with the label.
    Has(&'a str),
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
    /// The end of the input.
    Eof,
}

/// A token and the bytes of the input it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token<'a> {
    /// What it is.
    pub tok: Tok<'a>,
    /// Byte range in the input (empty for [`Tok::Eof`], at the end of the input).
    pub span: Range<usize>,
}

/// `[A-Za-z0-9_./-]`
fn is_label_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

/// "Whitespace is only space (0x20) and TAB (0x09)."
fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Splits `input` into tokens; the last one is always [`Tok::Eof`].
pub(super) fn tokenize(input: &str) -> Result<Vec<Token<'_>>, ParseError> {
    Lexer { input, pos: 0 }.run()
}

struct Lexer<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.input.as_bytes()
    }

    fn byte(&self, i: usize) -> Option<u8> {
        self.bytes().get(i).copied()
    }

    /// The first position at or after `i` that is not whitespace.
    fn skip_ws(&self, mut i: usize) -> usize {
        while self.byte(i).is_some_and(is_ws) {
            i += 1;
        }
        i
    }

    /// The end of the run of label bytes starting at `i`.
    fn label_end(&self, mut i: usize) -> usize {
        while self.byte(i).is_some_and(is_label_byte) {
            i += 1;
        }
        i
    }

    /// The span of the character at `i` (empty at the end of the input).
    fn char_span(&self, i: usize) -> Range<usize> {
        let len = self
            .input
            .get(i..)
            .and_then(|rest| rest.chars().next())
            .map_or(0, char::len_utf8);
        i..i + len
    }

    fn error(&self, message: impl Into<String>, span: Range<usize>) -> ParseError {
        ParseError::new(self.input, message, span)
    }

    fn run(mut self) -> Result<Vec<Token<'a>>, ParseError> {
        let mut out: Vec<Token<'a>> = Vec::new();
        loop {
            self.pos = self.skip_ws(self.pos);
            let start = self.pos;
            let Some(b) = self.byte(start) else {
                out.push(Token {
                    tok: Tok::Eof,
                    span: start..start,
                });
                return Ok(out);
            };
            let after_label = matches!(
                out.last(),
                Some(Token {
                    tok: Tok::Label(_),
                    ..
                })
            );
            let next = self.byte(start + 1);
            let (tok, end) = match b {
                b'(' => (Tok::LParen, start + 1),
                b')' => (Tok::RParen, start + 1),
                b'{' => (Tok::LBrace, start + 1),
                b'}' => (Tok::RBrace, start + 1),
                b',' => (Tok::Comma, start + 1),
                // "A `!` immediately followed by `=` is always `!=`."
                b'!' if next == Some(b'=') => (Tok::Ne, start + 2),
                b'!' => (Tok::Not, start + 1),
                b'=' if next == Some(b'=') => (Tok::Eq, start + 2),
                b'&' if next == Some(b'&') => (Tok::And, start + 2),
                b'|' if next == Some(b'|') => (Tok::Or, start + 2),
                b'=' => return Err(self.error("expected ==", start..start + 1)),
                b'&' => return Err(self.error("expected &&", start..start + 1)),
                b'|' => return Err(self.error("expected ||", start..start + 1)),
                b'"' | b'\'' => self.string(start, b)?,
                _ if after_label => self.operator(start)?,
                _ if is_label_byte(b) => self.operand(start)?,
                _ => {
                    let span = self.char_span(start);
                    let found = self.input.get(span.clone()).unwrap_or_default();
                    return Err(self.error(
                        format!("unexpected character `{}`", found.escape_debug()),
                        span,
                    ));
                }
            };
            out.push(Token {
                tok,
                span: start..end,
            });
            self.pos = end;
        }
    }

    /// A literal opened by `quote` at `start`: "the content runs up to the next identical
    /// quote. There are no escapes."
    fn string(&self, start: usize, quote: u8) -> Result<(Tok<'a>, usize), ParseError> {
        let body = start + 1;
        let len = self
            .bytes()
            .get(body..)
            .unwrap_or_default()
            .iter()
            .position(|&b| b == quote)
            .ok_or_else(|| self.error("unterminated string literal", start..self.input.len()))?;
        let content = self.input.get(body..body + len).unwrap_or_default();
        Ok((Tok::Str(content), body + len + 1))
    }

    /// Straight after a label: a keyword operator ending at a word boundary, with optional
    /// whitespace inside `starts with`, `ends with` and `not in`.
    fn operator(&self, start: usize) -> Result<(Tok<'a>, usize), ParseError> {
        // `word` at `at`, not followed by a label character: the end of the word.
        let word = |at: usize, word: &str| -> Option<usize> {
            let end = at + word.len();
            (self.input.get(at..end) == Some(word) && !self.byte(end).is_some_and(is_label_byte))
                .then_some(end)
        };
        // `first`, optional whitespace, then `second` at a word boundary.
        let two_words = |first: &str, second: &str| -> Option<usize> {
            let end = start + first.len();
            (self.input.get(start..end) == Some(first))
                .then(|| word(self.skip_ws(end), second))
                .flatten()
        };
        word(start, "contains")
            .map(|end| (Tok::Contains, end))
            .or_else(|| two_words("starts", "with").map(|end| (Tok::StartsWith, end)))
            .or_else(|| two_words("ends", "with").map(|end| (Tok::EndsWith, end)))
            .or_else(|| two_words("not", "in").map(|end| (Tok::NotIn, end)))
            .or_else(|| word(start, "in").map(|end| (Tok::In, end)))
            .ok_or_else(|| {
                let end = self.label_end(start);
                let span = if end > start {
                    start..end
                } else {
                    self.char_span(start)
                };
                self.error("expected operator after label", span)
            })
    }

    /// Where an operand may start: `has(label)`, `all()`, `global()`, or a label.
    fn operand(&self, start: usize) -> Result<(Tok<'a>, usize), ParseError> {
        let rest = self.input.get(start..).unwrap_or_default();
        if rest.starts_with("has(") {
            let label_start = self.skip_ws(start + "has(".len());
            let label_end = self.label_end(label_start);
            if label_end == label_start {
                return Err(self.error("expected label in has()", self.char_span(label_start)));
            }
            let label = self.label(label_start, label_end)?;
            let close = self.skip_ws(label_end);
            if self.byte(close) != Some(b')') {
                return Err(self.error("expected ) after label in has()", self.char_span(close)));
            }
            return Ok((Tok::Has(label), close + 1));
        }
        for (name, tok) in [("all(", Tok::All), ("global(", Tok::Global)] {
            if rest.starts_with(name) {
                let close = self.skip_ws(start + name.len());
                if self.byte(close) != Some(b')') {
                    return Err(
                        self.error(format!("expected ) after {name}"), self.char_span(close))
                    );
                }
                return Ok((tok, close + 1));
            }
        }
        let end = self.label_end(start);
        Ok((Tok::Label(self.label(start, end)?), end))
    }

    /// The label at `start..end`, if it is not too long.
    fn label(&self, start: usize, end: usize) -> Result<&'a str, ParseError> {
        if end - start > MAX_LABEL_LEN {
            return Err(self.error("label too long", start..end));
        }
        Ok(self.input.get(start..end).unwrap_or_default())
    }
}
