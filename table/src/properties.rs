//! Java `Properties` text encoding, as used by `hoodie.properties` and `.hoodie_partition_metadata`.

use std::collections::BTreeMap;

/// Parses Java properties text into a sorted map (comments, escapes and continuations handled).
pub(crate) fn parse(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        let trailing = line.chars().rev().take_while(|c| *c == '\\').count();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        let (k, v) = split_key_value(&logical);
        out.insert(unescape(k), unescape(v));
        logical.clear();
    }
    if !logical.is_empty() {
        let (k, v) = split_key_value(&logical);
        out.insert(unescape(k), unescape(v));
    }
    out
}

fn split_key_value(line: &str) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' | ' ' | '\t' => {
                let rest = line[i..].trim_start_matches([' ', '\t']);
                let rest = rest
                    .strip_prefix(['=', ':'])
                    .unwrap_or(rest)
                    .trim_start_matches([' ', '\t']);
                return (&line[..i], rest);
            }
            _ => {}
        }
    }
    (line, "")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

fn escape(s: &str, is_key: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            ' ' if is_key || i == 0 => out.push_str("\\ "),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Renders properties as Java's `Properties.store` does: a comment, a date line, then `key=value`.
pub(crate) fn render(comment: &str, entries: &BTreeMap<String, String>) -> String {
    let date = chrono::Utc::now().format("%a %b %d %H:%M:%S UTC %Y");
    let mut out = format!("#{comment}\n#{date}\n");
    for (k, v) in entries {
        out.push_str(&escape(k, true));
        out.push('=');
        out.push_str(&escape(v, false));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_hudi_escapes_and_comments() {
        let text = "#Properties saved on 2024-04-18T17:28:02.253Z\n#Thu Apr 18 12:28:02 CDT 2024\n\
                    hoodie.table.name=v6\nhoodie.table.create.schema={\"type\"\\:\"record\"}\n\
                    a.b = c\\\n   d\nkey\\=x:y\n";
        let p = parse(text);
        assert_eq!(p["hoodie.table.name"], "v6");
        assert_eq!(p["hoodie.table.create.schema"], "{\"type\":\"record\"}");
        assert_eq!(p["a.b"], "cd");
        assert_eq!(p["key=x"], "y");
    }

    #[test]
    fn render_then_parse_round_trips() {
        let mut m = BTreeMap::new();
        m.insert("k".to_owned(), "{\"a\":\"b=c\"} é #!".to_owned());
        m.insert("empty".to_owned(), String::new());
        m.insert(" lead".to_owned(), " space".to_owned());
        assert_eq!(parse(&render("c", &m)), m);
    }
}
