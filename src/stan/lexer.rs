//! Tokens of a Stan program, each with its line and column (1-based).

use super::Pos;

/// One token.
#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// A name or keyword.
    Ident(String),
    /// An integer literal.
    Int(i64),
    /// A real literal.
    Real(f64),
    /// A string literal (in `print` and `reject`).
    Str(String),
    /// Punctuation and operators, as written (`+=`, `.*`, `<-` is refused).
    Sym(&'static str),
    /// The end of the source.
    Eof,
}

const SYMS: &[&str] = &[
    "+=", "-=", "*=", "/=", ".*=", "./=", ".*", "./", "==", "!=", "<=", ">=", "&&", "||", "<-",
    "{", "}", "(", ")", "[", "]", "<", ">", ",", ";", ":", "?", "|", "~", "=", "+", "-", "*", "/",
    "%", "\\", "^", "'", "!",
];

/// Splits `src` into tokens; an error names the position of a character it cannot read.
pub fn lex(src: &str) -> Result<Vec<(Tok, Pos)>, (Pos, String)> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let advance = |i: &mut usize, line: &mut usize, col: &mut usize, n: usize| {
        for _ in 0..n {
            if chars[*i] == '\n' {
                *line += 1;
                *col = 1;
            } else {
                *col += 1;
            }
            *i += 1;
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let pos = Pos { line, col };
        if c.is_whitespace() {
            advance(&mut i, &mut line, &mut col, 1);
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'/') || c == '#' {
            if c == '#' && src[char_offset(src, i)..].starts_with("#include") {
                return Err((pos, "#include is not supported".into()));
            }
            while i < chars.len() && chars[i] != '\n' {
                advance(&mut i, &mut line, &mut col, 1);
            }
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            advance(&mut i, &mut line, &mut col, 2);
            loop {
                if i + 1 >= chars.len() {
                    return Err((pos, "unterminated /* comment".into()));
                }
                if chars[i] == '*' && chars[i + 1] == '/' {
                    advance(&mut i, &mut line, &mut col, 2);
                    break;
                }
                advance(&mut i, &mut line, &mut col, 1);
            }
            continue;
        }
        if c.is_ascii_alphabetic() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                advance(&mut i, &mut line, &mut col, 1);
            }
            out.push((Tok::Ident(chars[start..i].iter().collect()), pos));
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            let mut real = false;
            while i < chars.len() && chars[i].is_ascii_digit() {
                advance(&mut i, &mut line, &mut col, 1);
            }
            // A '.' followed by '*' or '/' is an elementwise operator, not a decimal point.
            if i < chars.len()
                && chars[i] == '.'
                && !matches!(chars.get(i + 1), Some('*') | Some('/'))
            {
                real = true;
                advance(&mut i, &mut line, &mut col, 1);
                while i < chars.len() && chars[i].is_ascii_digit() {
                    advance(&mut i, &mut line, &mut col, 1);
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    real = true;
                    let step = j - i;
                    advance(&mut i, &mut line, &mut col, step);
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        advance(&mut i, &mut line, &mut col, 1);
                    }
                }
            }
            let text: String = chars[start..i].iter().collect();
            let tok = if real {
                Tok::Real(
                    text.parse()
                        .map_err(|_| (pos, format!("bad number {text}")))?,
                )
            } else {
                Tok::Int(
                    text.parse()
                        .map_err(|_| (pos, format!("integer {text} out of range")))?,
                )
            };
            out.push((tok, pos));
            continue;
        }
        if c == '"' {
            advance(&mut i, &mut line, &mut col, 1);
            let start = i;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\n' {
                    return Err((pos, "unterminated string".into()));
                }
                advance(&mut i, &mut line, &mut col, 1);
            }
            if i >= chars.len() {
                return Err((pos, "unterminated string".into()));
            }
            let s: String = chars[start..i].iter().collect();
            advance(&mut i, &mut line, &mut col, 1);
            out.push((Tok::Str(s), pos));
            continue;
        }
        let rest: String = chars[i..chars.len().min(i + 3)].iter().collect();
        match SYMS.iter().find(|s| rest.starts_with(**s)) {
            Some(s) => {
                advance(&mut i, &mut line, &mut col, s.chars().count());
                out.push((Tok::Sym(s), pos));
            }
            None => return Err((pos, format!("unexpected character {c:?}"))),
        }
    }
    out.push((Tok::Eof, Pos { line, col }));
    Ok(out)
}

fn char_offset(s: &str, chars: usize) -> usize {
    s.char_indices().nth(chars).map_or(s.len(), |(o, _)| o)
}
