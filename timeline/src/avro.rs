//! lake's bounded Avro codec: a schema parser and binary decoder that every untrusted Avro input
//! passes through first (a count or length the bytes cannot hold is an error, never an allocation
//! the size of the claim; zero-width values are bounded by the input's size), the object-container
//! reader built on it, and the binary encoder of the log blocks' delete records.
//!
//! Timeline metadata itself is read and written as typed records through `apache-avro`
//! ([`crate::wire`]); this decoder validates those files before `apache-avro` decodes them.
//! Data is built as [`Datum`] values that already carry union branch indexes and record fields in
//! schema order, so encoding needs no schema.

/// An Avro value, in schema order.
#[derive(Clone, Debug, PartialEq)]
pub enum Datum {
    /// `null`.
    Null,
    /// `boolean`.
    Boolean(bool),
    /// `int`.
    Int(i32),
    /// `long`.
    Long(i64),
    /// `float`.
    Float(f32),
    /// `double`.
    Double(f64),
    /// `string`.
    String(String),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// `array`.
    Array(Vec<Datum>),
    /// `map` (string keys).
    Map(Vec<(String, Datum)>),
    /// `record`: field values in schema order.
    Record(Vec<Datum>),
    /// A union value: branch index and value.
    Union(u32, Box<Datum>),
}

impl Datum {
    /// A string datum.
    pub fn str(s: impl Into<String>) -> Datum {
        Datum::String(s.into())
    }

    /// An array of strings.
    pub fn strings<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Datum {
        Datum::Array(items.into_iter().map(|s| Datum::String(s.into())).collect())
    }

    /// Appends the binary encoding of this datum.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Datum::Null => {}
            Datum::Boolean(b) => out.push(u8::from(*b)),
            Datum::Int(i) => write_long(out, i64::from(*i)),
            Datum::Long(l) => write_long(out, *l),
            Datum::Float(f) => out.extend_from_slice(&f.to_le_bytes()),
            Datum::Double(f) => out.extend_from_slice(&f.to_le_bytes()),
            Datum::String(s) => write_bytes(out, s.as_bytes()),
            Datum::Bytes(b) => write_bytes(out, b),
            Datum::Array(items) => {
                if !items.is_empty() {
                    write_long(out, items.len() as i64);
                    items.iter().for_each(|d| d.encode(out));
                }
                write_long(out, 0);
            }
            Datum::Map(entries) => {
                if !entries.is_empty() {
                    write_long(out, entries.len() as i64);
                    for (k, v) in entries {
                        write_bytes(out, k.as_bytes());
                        v.encode(out);
                    }
                }
                write_long(out, 0);
            }
            Datum::Record(fields) => fields.iter().for_each(|d| d.encode(out)),
            Datum::Union(branch, d) => {
                write_long(out, i64::from(*branch));
                d.encode(out);
            }
        }
    }
}

/// Appends a zig-zag varint long.
pub fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut n = ((v << 1) ^ (v >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Appends length-prefixed bytes.
pub fn write_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// An Avro schema, as needed to decode binary data.
#[derive(Clone, Debug, PartialEq)]
pub enum Schema {
    /// `null`.
    Null,
    /// `boolean`.
    Boolean,
    /// `int` (and logical types on it).
    Int,
    /// `long` (and logical types on it).
    Long,
    /// `float`.
    Float,
    /// `double`.
    Double,
    /// `bytes`.
    Bytes,
    /// `string`.
    String,
    /// `fixed` of this size.
    Fixed(usize),
    /// `enum` with these symbols.
    Enum(Vec<String>),
    /// `array` of items.
    Array(Box<Schema>),
    /// `map` of values.
    Map(Box<Schema>),
    /// `record` with named fields.
    Record {
        /// Full name.
        name: String,
        /// (field name, schema).
        fields: Vec<(String, Schema)>,
    },
    /// A union of branches.
    Union(Vec<Schema>),
}

impl Schema {
    /// Parses a schema from its JSON text, resolving named-type references.
    pub fn parse(json: &str) -> Result<Schema, String> {
        let v: serde_json::Value =
            serde_json::from_str(json).map_err(|e| format!("schema is not JSON: {e}"))?;
        let mut named = std::collections::HashMap::new();
        parse_schema(&v, None, &mut named)
    }
}

fn full_name(name: &str, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
        _ => name.to_owned(),
    }
}

fn parse_schema(
    v: &serde_json::Value,
    namespace: Option<&str>,
    named: &mut std::collections::HashMap<String, Schema>,
) -> Result<Schema, String> {
    use serde_json::Value;
    match v {
        Value::String(s) => Ok(match s.as_str() {
            "null" => Schema::Null,
            "boolean" => Schema::Boolean,
            "int" => Schema::Int,
            "long" => Schema::Long,
            "float" => Schema::Float,
            "double" => Schema::Double,
            "bytes" => Schema::Bytes,
            "string" => Schema::String,
            other => named
                .get(&full_name(other, namespace))
                .or_else(|| named.get(other))
                .or_else(|| named.values().find(|s| matches!(s, Schema::Record { name, .. } if name.rsplit('.').next() == Some(other))))
                .cloned()
                .ok_or_else(|| format!("unknown Avro type {other:?}"))?,
        }),
        Value::Array(branches) => Ok(Schema::Union(
            branches.iter().map(|b| parse_schema(b, namespace, named)).collect::<Result<_, _>>()?,
        )),
        Value::Object(o) => {
            let ty = o.get("type").ok_or("Avro schema object without \"type\"")?;
            let ns = o.get("namespace").and_then(Value::as_str).or(namespace);
            match ty.as_str() {
                Some("record") | Some("error") => {
                    let name = full_name(o.get("name").and_then(Value::as_str).unwrap_or_default(), ns);
                    let ns_inner = name.rsplit_once('.').map(|(n, _)| n.to_owned());
                    // Register first so recursive references resolve to an empty shell.
                    named.insert(name.clone(), Schema::Record { name: name.clone(), fields: Vec::new() });
                    let mut fields = Vec::new();
                    for f in o.get("fields").and_then(Value::as_array).into_iter().flatten() {
                        let fname = f.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                        let fs = parse_schema(f.get("type").unwrap_or(&Value::Null), ns_inner.as_deref(), named)?;
                        fields.push((fname, fs));
                    }
                    let rec = Schema::Record { name: name.clone(), fields };
                    named.insert(name, rec.clone());
                    Ok(rec)
                }
                Some("enum") => {
                    let symbols = o
                        .get("symbols")
                        .and_then(Value::as_array)
                        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                        .unwrap_or_default();
                    let e = Schema::Enum(symbols);
                    if let Some(n) = o.get("name").and_then(Value::as_str) {
                        named.insert(full_name(n, ns), e.clone());
                    }
                    Ok(e)
                }
                Some("fixed") => {
                    let f = Schema::Fixed(o.get("size").and_then(Value::as_u64).unwrap_or(0) as usize);
                    if let Some(n) = o.get("name").and_then(Value::as_str) {
                        named.insert(full_name(n, ns), f.clone());
                    }
                    Ok(f)
                }
                Some("array") => Ok(Schema::Array(Box::new(parse_schema(o.get("items").unwrap_or(&Value::Null), ns, named)?))),
                Some("map") => Ok(Schema::Map(Box::new(parse_schema(o.get("values").unwrap_or(&Value::Null), ns, named)?))),
                _ => parse_schema(ty, ns, named),
            }
        }
        other => Err(format!("bad Avro schema {other}")),
    }
}

/// Reads a zig-zag varint long.
pub fn read_long(buf: &mut &[u8]) -> Result<i64, String> {
    let mut n: u64 = 0;
    let mut shift = 0;
    loop {
        let (&b, rest) = buf.split_first().ok_or("truncated Avro varint")?;
        *buf = rest;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err("Avro varint too long".into());
        }
    }
    Ok(((n >> 1) as i64) ^ -((n & 1) as i64))
}

fn read_bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = usize::try_from(read_long(buf)?).map_err(|_| "negative Avro length")?;
    if buf.len() < len {
        return Err("truncated Avro bytes".into());
    }
    let (b, rest) = buf.split_at(len);
    *buf = rest;
    Ok(b)
}

fn take_n<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if buf.len() < n {
        return Err("truncated Avro value".into());
    }
    let (b, rest) = buf.split_at(n);
    *buf = rest;
    Ok(b)
}

/// Decodes one datum of `schema` from binary data. The values it yields are bounded by the input's
/// size: zero-width values (nulls, empty records) repeated by a block count cannot make a few bytes
/// claim billions of values.
pub fn decode(schema: &Schema, buf: &mut &[u8]) -> Result<Datum, String> {
    let mut budget = buf.len().saturating_mul(4).saturating_add(64);
    decode_bounded(schema, buf, &mut budget)
}

fn decode_bounded(schema: &Schema, buf: &mut &[u8], budget: &mut usize) -> Result<Datum, String> {
    *budget = budget
        .checked_sub(1)
        .ok_or("Avro datum holds more values than its bytes can encode")?;
    Ok(match schema {
        Schema::Null => Datum::Null,
        Schema::Boolean => {
            let (&b, rest) = buf.split_first().ok_or("truncated Avro boolean")?;
            *buf = rest;
            Datum::Boolean(b != 0)
        }
        Schema::Int => {
            Datum::Int(i32::try_from(read_long(buf)?).map_err(|_| "Avro int out of range")?)
        }
        Schema::Long => Datum::Long(read_long(buf)?),
        Schema::Float => {
            let mut b = [0u8; 4];
            b.copy_from_slice(take_n(buf, 4)?);
            Datum::Float(f32::from_le_bytes(b))
        }
        Schema::Double => {
            let mut b = [0u8; 8];
            b.copy_from_slice(take_n(buf, 8)?);
            Datum::Double(f64::from_le_bytes(b))
        }
        Schema::Bytes => Datum::Bytes(read_bytes(buf)?.to_vec()),
        Schema::String => Datum::String(
            String::from_utf8(read_bytes(buf)?.to_vec()).map_err(|_| "Avro string is not UTF-8")?,
        ),
        Schema::Fixed(n) => {
            if buf.len() < *n {
                return Err("truncated Avro fixed".into());
            }
            let (b, rest) = buf.split_at(*n);
            *buf = rest;
            Datum::Bytes(b.to_vec())
        }
        Schema::Enum(symbols) => {
            let i = read_long(buf)?;
            Datum::String(
                symbols
                    .get(i as usize)
                    .cloned()
                    .ok_or("Avro enum index out of range")?,
            )
        }
        Schema::Array(items) => {
            let mut out = Vec::new();
            read_blocks(buf, |buf| {
                out.push(decode_bounded(items, buf, budget)?);
                Ok(())
            })?;
            Datum::Array(out)
        }
        Schema::Map(values) => {
            let mut out = Vec::new();
            read_blocks(buf, |buf| {
                let k = String::from_utf8(read_bytes(buf)?.to_vec())
                    .map_err(|_| "Avro map key is not UTF-8")?;
                out.push((k, decode_bounded(values, buf, budget)?));
                Ok(())
            })?;
            Datum::Map(out)
        }
        Schema::Record { fields, .. } => Datum::Record(
            fields
                .iter()
                .map(|(_, f)| decode_bounded(f, buf, budget))
                .collect::<Result<_, _>>()?,
        ),
        Schema::Union(branches) => {
            let i = read_long(buf)?;
            let b = branches
                .get(i as usize)
                .ok_or("Avro union index out of range")?;
            Datum::Union(i as u32, Box::new(decode_bounded(b, buf, budget)?))
        }
    })
}

/// Reads the blocks of an array or map: counts (negative when a byte size follows) until zero,
/// calling `item` once per item.
fn read_blocks(
    buf: &mut &[u8],
    mut item: impl FnMut(&mut &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    loop {
        let mut n = read_long(buf)?;
        if n == 0 {
            return Ok(());
        }
        if n < 0 {
            n = n.checked_neg().ok_or("bad Avro block count")?;
            read_long(buf)?; // the block's size in bytes
        }
        // Every item Hudi's schemas hold takes at least one byte: a count beyond the data is corrupt
        // (and would otherwise loop for ever over zero-sized reads).
        if n > buf.len() as i64 + 1 {
            return Err(format!("Avro block of {n} items in {} bytes", buf.len()));
        }
        for _ in 0..n {
            item(buf)?;
        }
    }
}

/// Reads an Avro object container file with the null codec: its schema JSON and every datum.
pub fn read_container(bytes: &[u8]) -> Result<(String, Vec<Datum>), String> {
    let mut buf = bytes
        .strip_prefix(b"Obj\x01")
        .ok_or("not an Avro container file")?;
    let meta = decode(&Schema::Map(Box::new(Schema::Bytes)), &mut buf)?;
    let Datum::Map(entries) = meta else {
        return Err("bad container header".into());
    };
    let get = |k: &str| {
        entries
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| match v {
                Datum::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
    };
    if get("avro.codec").is_some_and(|c| c != "null") {
        return Err("only the null codec is supported".into());
    }
    let schema_json = get("avro.schema").ok_or("container without avro.schema")?;
    let schema = Schema::parse(&schema_json)?;
    if buf.len() < 16 {
        return Err("truncated container header".into());
    }
    let (sync, mut rest) = buf.split_at(16);
    let mut out = Vec::new();
    while !rest.is_empty() {
        let count = read_long(&mut rest)?;
        let data = read_bytes(&mut rest)?;
        if count < 0 || count > data.len() as i64 * 4 + 64 {
            return Err(format!(
                "container block of {count} datums in {} bytes",
                data.len()
            ));
        }
        let mut d = data;
        for _ in 0..count {
            out.push(decode(&schema, &mut d)?);
        }
        if rest.len() < 16 || &rest[..16] != sync {
            return Err("bad container sync marker".into());
        }
        rest = &rest[16..];
    }
    Ok((schema_json, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_longs_match_the_spec() {
        let enc = |v: i64| {
            let mut b = Vec::new();
            write_long(&mut b, v);
            b
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(-1), [0x01]);
        assert_eq!(enc(1), [0x02]);
        assert_eq!(enc(-64), [0x7f]);
        assert_eq!(enc(64), [0x80, 0x01]);
    }

    #[test]
    fn zero_width_values_cannot_outnumber_the_input() {
        // 1000 blocks of 1000 nulls each: two bytes per block claim a million values.
        let schema = Schema::Array(Box::new(Schema::Null));
        let mut bytes = Vec::new();
        for _ in 0..1000 {
            write_long(&mut bytes, 1000);
        }
        write_long(&mut bytes, 0);
        let err = decode(&schema, &mut bytes.as_slice()).expect_err("bounded");
        assert!(err.contains("more values"), "{err}");
        // A few legitimate nulls still decode.
        let mut ok = Vec::new();
        write_long(&mut ok, 2);
        write_long(&mut ok, 0);
        assert_eq!(
            decode(&schema, &mut ok.as_slice()),
            Ok(Datum::Array(vec![Datum::Null; 2]))
        );
    }

    #[test]
    fn encoding_follows_the_spec_and_decodes_back() {
        let schema = Schema::parse(
            r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"},{"name":"a","type":{"type":"array","items":"long"}},{"name":"v","type":["int","null"]}]}"#,
        )
        .expect("schema");
        let d = Datum::Record(vec![
            Datum::str("x"),
            Datum::Array(vec![]),
            Datum::Union(0, Box::new(Datum::Int(1))),
        ]);
        let mut body = Vec::new();
        d.encode(&mut body);
        assert_eq!(body, [0x02, b'x', 0x00, 0x00, 0x02]);
        assert_eq!(decode(&schema, &mut body.as_slice()), Ok(d));
    }
}
