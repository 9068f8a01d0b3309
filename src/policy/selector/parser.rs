//! Tokens → [`Expr`] (`libcalico-go/lib/selector/parser`).
//!
//! ```text
//! selector := ws* EOF | or EOF
//! or       := and ("||" and)*
//! and      := unary ("&&" unary)*
//! unary    := "!"* operand            (an odd number of "!" negates)
//! operand  := has(l) | all() | global() | "(" or ")"
//!           | l "==" s | l "!=" s | l contains s | l starts with s | l ends with s
//!           | l in set | l not in set
//! set      := "{" [ s ("," s)* [","] ] "}"
//! ```

use std::collections::BTreeSet;

use super::{
    Expr, ParseError,
    lexer::{Tok, Token, tokenize},
};

/// Parses a whole selector.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(input)?;
    let mut p = Parser {
        input,
        tokens,
        pos: 0,
    };
    if p.peek().tok == Tok::Eof {
        return Ok(Expr::All);
    }
    let e = p.or()?;
    let t = p.peek();
    if t.tok != Tok::Eof {
        return Err(ParseError::new(
            input,
            "unexpected content at end of selector",
            t.span.clone(),
        ));
    }
    Ok(e)
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // INVARIANT: `tokenize` always ends with Eof, and `next` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        if t.tok != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    fn error(&self, message: &str, t: &Token) -> ParseError {
        let span = if t.tok == Tok::Eof {
            self.input.len()..self.input.len()
        } else {
            t.span.clone()
        };
        let message = if t.tok == Tok::Eof {
            format!("{message}, found end of selector")
        } else {
            message.to_owned()
        };
        ParseError::new(self.input, message, span)
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut v = vec![self.and()?];
        while self.peek().tok == Tok::Or {
            self.next();
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::Or(v)
        })
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut v = vec![self.unary()?];
        while self.peek().tok == Tok::And {
            self.next();
            v.push(self.unary()?);
        }
        Ok(if v.len() == 1 {
            v.remove(0)
        } else {
            Expr::And(v)
        })
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let mut negations = 0;
        while self.peek().tok == Tok::Not {
            self.next();
            negations += 1;
        }
        let e = self.operand()?;
        Ok(if negations % 2 == 1 {
            Expr::Not(Box::new(e))
        } else {
            e
        })
    }

    fn operand(&mut self) -> Result<Expr, ParseError> {
        let t = self.next();
        match t.tok {
            Tok::Has(l) => Ok(Expr::Has(l)),
            Tok::All => Ok(Expr::All),
            Tok::Global => Ok(Expr::Global),
            Tok::LParen => {
                let e = self.or()?;
                let close = self.next();
                if close.tok != Tok::RParen {
                    return Err(self.error("expected )", &close));
                }
                Ok(e)
            }
            Tok::Label(l) => {
                let op = self.next();
                match op.tok {
                    Tok::Eq => Ok(Expr::Eq(l, self.string()?)),
                    Tok::Ne => Ok(Expr::Ne(l, self.string()?)),
                    Tok::Contains => Ok(Expr::Contains(l, self.string()?)),
                    Tok::StartsWith => Ok(Expr::StartsWith(l, self.string()?)),
                    Tok::EndsWith => Ok(Expr::EndsWith(l, self.string()?)),
                    Tok::In => Ok(Expr::In(l, self.set()?)),
                    Tok::NotIn => Ok(Expr::NotIn(l, self.set()?)),
                    _ => Err(self.error("expected operator after label", &op)),
                }
            }
            _ => Err(self.error("unexpected token", &t)),
        }
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok(s),
            _ => Err(self.error("expected string literal", &t)),
        }
    }

    fn set(&mut self) -> Result<BTreeSet<String>, ParseError> {
        let open = self.next();
        if open.tok != Tok::LBrace {
            return Err(self.error("expected set literal", &open));
        }
        let mut set = BTreeSet::new();
        if self.peek().tok == Tok::RBrace {
            self.next();
            return Ok(set);
        }
        loop {
            let t = self.next();
            match t.tok {
                Tok::Str(s) => {
                    set.insert(s);
                }
                _ => return Err(self.error("expected string literal in set", &t)),
            }
            let sep = self.next();
            match sep.tok {
                Tok::RBrace => return Ok(set),
                Tok::Comma if self.peek().tok == Tok::RBrace => {
                    self.next();
                    return Ok(set);
                }
                Tok::Comma => {}
                _ => return Err(self.error("expected , or } in set", &sep)),
            }
        }
    }
}
