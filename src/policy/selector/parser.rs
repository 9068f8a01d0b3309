//! Step two: tokens → [`Expr`] (`parseRoot`, `parseOrExpression`, `parseAndExpression` and
//! `parseOperation` in Calico's `parser.go`, reference/calico-selectors.md §2).
//!
//! ```text
//! selector := ws* EOF | or EOF
//! or       := and ("||" and)*
//! and      := unary ("&&" unary)*
//! unary    := "!"* operand
//! operand  := has(l) | all() | global() | "(" or ")"
//!           | l "==" s | l "!=" s | l contains s | l starts with s | l ends with s
//!           | l in set | l not in set
//! set      := "{" [ s ("," s)* [","] ] "}"
//! ```
//!
//! The result is always [normalised](Expr::normalized): a group with one member is that member,
//! and negations cancel in pairs, both for runs of `!` ("`!!x` is `x`, and `!!!x` is `!x`") and
//! across parentheses (`!(!x)` is `x`, where Calico keeps two nodes that mean the same).
//! Parenthesised groups inside a group of the same kind stay nested, so the canonical form,
//! which parenthesises every group, parses back to the same tree.

use std::collections::BTreeSet;

use super::{
    Expr, ParseError,
    lexer::{Tok, Token, tokenize},
};

/// How deeply parentheses may nest. Calico has no limit, but recursion here is on the native
/// stack; real selectors nest a handful of levels.
pub(super) const MAX_DEPTH: usize = 128;

/// Parses a whole selector; an empty (or blank) input is `all()`.
pub(super) fn parse(input: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(input)?;
    let mut p = Parser {
        input,
        tokens: &tokens,
        pos: 0,
        depth: 0,
    };
    if p.peek().tok == Tok::Eof {
        return Ok(Expr::All);
    }
    let e = p.or()?;
    let t = p.next();
    if t.tok != Tok::Eof {
        return Err(p.error("unexpected content at end of selector", t));
    }
    Ok(e)
}

struct Parser<'t, 'a> {
    input: &'a str,
    /// INVARIANT: ends with [`Tok::Eof`] (`tokenize` guarantees it).
    tokens: &'t [Token<'a>],
    pos: usize,
    /// Open parentheses around the current position.
    depth: usize,
}

/// Stands in for the end of the input should the token list ever be empty.
const EOF: Token<'static> = Token {
    tok: Tok::Eof,
    span: 0..0,
};

impl<'t, 'a> Parser<'t, 'a> {
    fn peek(&self) -> &'t Token<'a> {
        self.tokens
            .get(self.pos)
            .or_else(|| self.tokens.last())
            .unwrap_or(&EOF)
    }

    /// The current token; moves past it unless it is the end of the input.
    fn next(&mut self) -> &'t Token<'a> {
        let t = self.peek();
        if t.tok != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    fn error(&self, message: &str, at: &Token<'_>) -> ParseError {
        ParseError::new(self.input, message, at.span.clone())
    }

    /// `and ("||" and)*`
    fn or(&mut self) -> Result<Expr, ParseError> {
        let first = self.and()?;
        if self.peek().tok != Tok::Or {
            return Ok(first);
        }
        let mut children = vec![first];
        while self.peek().tok == Tok::Or {
            self.next();
            children.push(self.and()?);
        }
        Ok(Expr::Or(children))
    }

    /// `unary ("&&" unary)*`
    fn and(&mut self) -> Result<Expr, ParseError> {
        let first = self.unary()?;
        if self.peek().tok != Tok::And {
            return Ok(first);
        }
        let mut children = vec![first];
        while self.peek().tok == Tok::And {
            self.next();
            children.push(self.unary()?);
        }
        Ok(Expr::And(children))
    }

    /// `"!"* operand`: "any number of leading `!` collapse by parity".
    fn unary(&mut self) -> Result<Expr, ParseError> {
        let mut negated = false;
        while self.peek().tok == Tok::Not {
            self.next();
            negated = !negated;
        }
        let e = self.operand()?;
        Ok(if negated { e.negate() } else { e })
    }

    fn operand(&mut self) -> Result<Expr, ParseError> {
        let t = self.next();
        match t.tok {
            Tok::Has(label) => Ok(Expr::Has(label.to_owned())),
            Tok::All => Ok(Expr::All),
            Tok::Global => Ok(Expr::Global),
            Tok::LParen => {
                if self.depth >= MAX_DEPTH {
                    return Err(self.error("parentheses nested too deeply", t));
                }
                self.depth += 1;
                let e = self.or()?;
                self.depth -= 1;
                let close = self.next();
                if close.tok != Tok::RParen {
                    return Err(self.error("expected )", close));
                }
                Ok(e)
            }
            Tok::Label(label) => self.comparison(label),
            Tok::Eof => Err(self.error("unexpected end of selector", t)),
            _ => Err(self.error("unexpected token", t)),
        }
    }

    /// `label op value`, the label already read.
    fn comparison(&mut self, label: &str) -> Result<Expr, ParseError> {
        let label = label.to_owned();
        let op = self.next();
        Ok(match op.tok {
            Tok::Eq => Expr::Eq(label, self.string()?),
            Tok::Ne => Expr::Ne(label, self.string()?),
            Tok::Contains => Expr::Contains(label, self.string()?),
            Tok::StartsWith => Expr::StartsWith(label, self.string()?),
            Tok::EndsWith => Expr::EndsWith(label, self.string()?),
            Tok::In => Expr::In(label, self.set()?),
            Tok::NotIn => Expr::NotIn(label, self.set()?),
            _ => return Err(self.error("expected operator after label", op)),
        })
    }

    /// A string literal: "the right-hand side must be a string literal".
    fn string(&mut self) -> Result<String, ParseError> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok(s.to_owned()),
            _ => Err(self.error("expected string literal", t)),
        }
    }

    /// `"{" [ s ("," s)* [","] ] "}"`: empty sets and one trailing comma are fine.
    fn set(&mut self) -> Result<BTreeSet<String>, ParseError> {
        let open = self.next();
        if open.tok != Tok::LBrace {
            return Err(self.error("expected set literal", open));
        }
        let mut set = BTreeSet::new();
        loop {
            // After `{` or `,`: a value or the end of the set.
            let t = self.next();
            match t.tok {
                Tok::RBrace => return Ok(set),
                Tok::Str(s) => {
                    set.insert(s.to_owned());
                }
                _ => return Err(self.error("expected string literal or }", t)),
            }
            // After a value: more values or the end of the set.
            let t = self.next();
            match t.tok {
                Tok::RBrace => return Ok(set),
                Tok::Comma => {}
                _ => return Err(self.error("expected , or }", t)),
            }
        }
    }
}
