//! One line of a dnsmasq.conf: the option and its comma-separated fields,
//! with dnsmasq's quoting (quotes protect commas, spaces and `#`) and
//! escapes.

/// A line's option and its comma-separated fields (`None`: no `=`).
pub struct Line {
    pub key: String,
    pub value: Option<Vec<String>>,
}

/// One character of a line, and whether quotes protected it.
#[derive(Clone, Copy)]
struct Char {
    c: char,
    quoted: bool,
}

/// Splits a line into option and fields; `None` for blank and comment lines.
pub fn parse_line(text: &str) -> Result<Option<Line>, String> {
    let chars = unquote(text)?;
    let chars = trim(&chars);
    if chars.is_empty() {
        return Ok(None);
    }
    let (key, value) = match chars.iter().position(|ch| ch.c == '=' && !ch.quoted) {
        Some(equals) => (&chars[..equals], Some(&chars[equals + 1..])),
        None => (chars, None),
    };
    // dnsmasq's option names are lower case; accept any case.
    let key = collect(trim(key)).to_ascii_lowercase();
    let value = value.map(fields);
    Ok(Some(Line { key, value }))
}

/// Splits a line that has no option name (a `dhcp-hostsdir` file's line,
/// `52:54:00:12:34:56,set:known`) into its comma-separated fields, with
/// the same quoting and comments; `None` for blank and comment lines.
pub fn parse_fields(text: &str) -> Result<Option<Vec<String>>, String> {
    let chars = unquote(text)?;
    let chars = trim(&chars);
    Ok((!chars.is_empty()).then(|| fields(chars)))
}

/// The fields between unquoted commas, each trimmed.
fn fields(chars: &[Char]) -> Vec<String> {
    chars
        .split(|ch| ch.c == ',' && !ch.quoted)
        .map(|field| collect(trim(field)))
        .collect()
}

/// Resolves quotes and drops the comment, as dnsmasq's reader does.
fn unquote(text: &str) -> Result<Vec<Char>, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut after_space = true;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                loop {
                    let c = match chars.next() {
                        None => {
                            return Err("a double quote is not closed; add the closing \"".into());
                        }
                        Some('"') => break,
                        Some('\\') => match chars.peek().and_then(|&next| escape(next)) {
                            Some(escaped) => {
                                chars.next();
                                escaped
                            }
                            None => '\\',
                        },
                        Some(c) => c,
                    };
                    out.push(Char { c, quoted: true });
                }
                after_space = false;
            }
            c if c.is_whitespace() => {
                out.push(Char {
                    c: ' ',
                    quoted: false,
                });
                after_space = true;
            }
            '#' if after_space => break,
            c => {
                out.push(Char { c, quoted: false });
                after_space = false;
            }
        }
    }
    Ok(out)
}

/// dnsmasq's escapes inside quotes; any other backslash stays as it is.
fn escape(c: char) -> Option<char> {
    Some(match c {
        '"' => '"',
        '\\' => '\\',
        't' => '\t',
        'n' => '\n',
        'e' => '\x1b',
        'b' => '\x08',
        'r' => '\r',
        _ => return None,
    })
}

/// Without the unquoted spaces at either end.
fn trim(chars: &[Char]) -> &[Char] {
    let unquoted_space = |ch: &Char| ch.c == ' ' && !ch.quoted;
    let start = chars
        .iter()
        .position(|ch| !unquoted_space(ch))
        .unwrap_or(chars.len());
    let end = chars
        .iter()
        .rposition(|ch| !unquoted_space(ch))
        .map_or(start, |i| i + 1);
    &chars[start..end]
}

fn collect(chars: &[Char]) -> String {
    chars.iter().map(|ch| ch.c).collect()
}
