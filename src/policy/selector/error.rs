//! [`ParseError`]: what went wrong while reading a selector, and where.
//!
//! Spans are byte offsets into the input (for slicing); the column is 1-based and counted in
//! characters (for people). Columns always point at the offending character, or one past the
//! last character when the input ended too early.

use std::ops::Range;

/// A selector syntax error, with the byte span and 1-based column it points at.
///
/// ```
/// use alp_authz::policy::selector::Selector;
///
/// let err = Selector::parse("app = 'web'").unwrap_err();
/// assert_eq!(err.message, "expected ==");
/// assert_eq!(err.column, 5);
/// assert_eq!(err.span, 4..5);
/// assert_eq!(err.to_string(), "expected == at column 5");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at column {column}")]
pub struct ParseError {
    /// What is wrong, as a lower-case phrase.
    pub message: String,
    /// Byte offsets into the input of the offending text (empty at the end of the input).
    pub span: Range<usize>,
    /// 1-based column, in characters, of the start of `span`.
    pub column: usize,
}

impl ParseError {
    /// Builds an error for `span` of `input`, computing its column.
    pub(super) fn new(input: &str, message: impl Into<String>, span: Range<usize>) -> Self {
        let start = span.start.min(input.len());
        let column = input
            .get(..start)
            .map_or(start, |prefix| prefix.chars().count())
            + 1;
        ParseError {
            message: message.into(),
            span,
            column,
        }
    }

    /// The input with a caret line under the span, for command-line output.
    ///
    /// Only the line holding the start of the span is shown (a newline can only occur inside a
    /// string literal or as the offending character), and tabs are kept in the caret line so
    /// the carets line up.
    ///
    /// ```
    /// use alp_authz::policy::selector::Selector;
    ///
    /// let input = "app == 'web' & tier == 'db'";
    /// let err = Selector::parse(input).unwrap_err();
    /// assert_eq!(
    ///     err.render(input),
    ///     "app == 'web' & tier == 'db'\n             ^ expected &&"
    /// );
    /// ```
    pub fn render(&self, input: &str) -> String {
        let start = floor_char_boundary(input, self.span.start);
        let end = floor_char_boundary(input, self.span.end.max(start));
        let line_start = input[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = input[start..].find('\n').map_or(input.len(), |i| start + i);
        let line = &input[line_start..line_end];
        let pad: String = input[line_start..start]
            .chars()
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let width = input[start..end.min(line_end)].chars().count().max(1);
        format!("{line}\n{pad}{} {}", "^".repeat(width), self.message)
    }
}

/// The largest char boundary of `s` at or below `i` (clamped to the length).
fn floor_char_boundary(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
