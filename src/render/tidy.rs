//! Whitespace clean-up after templating, so templates can stay readable while the output has no
//! trailing spaces, no runs of blank lines, and exactly one final newline (as nixfmt leaves it).

pub fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_run = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank_run += 1;
            if blank_run > 1 || out.is_empty() {
                continue;
            }
        } else {
            blank_run = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn collapses_blank_runs_and_trailing_space() {
        assert_eq!(super::tidy("\n\na  \n\n\n\nb\n\n"), "a\n\nb\n");
    }
}
