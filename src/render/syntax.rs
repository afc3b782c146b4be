use thiserror::Error;

use super::Tree;

/// A generated `.nix` file that does not parse: always a flakesmith bug, reported before any
/// file is written.
#[derive(Debug, Error)]
#[error("generated {path} is not valid Nix at line {line}, column {column}: {message} (a flakesmith template bug; nothing was written)")]
pub struct SyntaxError {
    pub path: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Parses every `.nix` file of the tree with rnix.
pub fn check_syntax(tree: &Tree) -> Result<(), SyntaxError> {
    for (path, file) in tree.iter().filter(|(p, _)| p.ends_with(".nix")) {
        let text = file.as_text().unwrap_or_default();
        check_text(path, text)?;
    }
    Ok(())
}

pub fn check_text(path: &str, text: &str) -> Result<(), SyntaxError> {
    let parse = rnix::Root::parse(text);
    if let Some(error) = parse.errors().first() {
        let offset = error_offset(error).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        return Err(SyntaxError {
            path: path.to_owned(),
            line,
            column,
            message: without_byte_range(&error.to_string()),
        });
    }
    Ok(())
}

/// rnix names the error's byte range (`unexpected token at 2920..2932`); the line and column
/// already say where, in the units an editor shows.
fn without_byte_range(message: &str) -> String {
    let range = regex::Regex::new(r" at \d+\.\.\d+").expect("valid regex");
    range.replace_all(message, "").into_owned()
}

fn error_offset(error: &rnix::ParseError) -> usize {
    use rnix::ParseError as E;
    match error {
        E::Unexpected(r)
        | E::UnexpectedExtra(r)
        | E::UnexpectedWanted(_, r, _)
        | E::UnexpectedDoubleBind(r)
        | E::DuplicatedArgs(r, _) => usize::from(r.start()),
        _ => usize::MAX,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_position_of_a_syntax_error() {
        let e = check_text("x.nix", "{\n  a = 1;\n  b = ;\n}\n").unwrap_err();
        assert_eq!((e.line, e.path.as_str()), (3, "x.nix"));
        assert!(check_text("ok.nix", "{ a = 1; }\n").is_ok());
    }
}
