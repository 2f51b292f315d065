//! Direct decoding of a topic's steady state into Arrow columns, without a JSON tree per message.
//!
//! Once a table exists, almost every batch of its topic holds events whose images carry only the
//! table's columns, with flat values: strings, integers, floats, booleans and nulls. For such
//! batches this decoder scans each message once, writes its values straight into column builders
//! and applies the rules of the general decoder ([`crate::messages`]): the Debezium op, the image it
//! takes, partition moves, the source position, the message key column, record keys that must be
//! present and non-empty, integers that must fit their column.
//!
//! Confluent-framed Avro batches take the same rules on the values the Avro library reads (after
//! lake's bounded decoder): each schema id the batch names must be one the table takes, and the
//! images hold only the table's columns with strings, booleans, integers, finite doubles or nulls.
//!
//! It declines a batch — which the general decoder, the reference for every rule and every error
//! message, then decodes — on anything else: a column the table does not have, a schema envelope, a
//! nested, temporal or decimal value, a number its column cannot hold exactly, a malformed message,
//! any error at all. Where it accepts a batch, it returns the batch the general decoder would
//! (randomised tests compare the two, for JSON and for Avro).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch,
    StringBuilder, UInt64Builder, new_null_array,
};
use arrow::datatypes::{DataType, Decimal128Type, Field, Schema};
use lake_table::ChangeBatch;
use lake_table::config::SOURCE_POSITION_FIELD;

use apache_avro::types::Value as Avro;

use crate::avro::{datum_reader, frame, read_datum};
use crate::config::DecoderKind;
use crate::debezium::{push_padded, write_position};
use crate::messages::{DecodeSpec, DecodedMessages, Message};

/// Nesting deeper than this declines (serde_json refuses 128 levels).
const MAX_DEPTH: u32 = 100;

/// A JSON number as serde_json classifies it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Num {
    Pos(u64),
    Neg(i64),
    Float(f64),
}

/// A strict JSON scanner over one message: every value it passes over, even one it skips, must be
/// valid JSON, so that it never accepts a message the general decoder would reject.
struct Scan<'a> {
    s: &'a str,
    i: usize,
    depth: u32,
}

impl<'a> Scan<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, i: 0, depth: 0 }
    }

    fn ws(&mut self) {
        let b = self.s.as_bytes();
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.as_bytes().get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn at_end(&mut self) -> bool {
        self.ws();
        self.i == self.s.len()
    }

    fn word(&mut self, w: &str) -> Option<()> {
        self.s[self.i..].starts_with(w).then(|| self.i += w.len())
    }

    /// A string (the scanner is at its opening quote), borrowed unless it holds escapes.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let b = self.s.as_bytes();
        let start = self.i;
        loop {
            match *b.get(self.i)? {
                b'"' => {
                    let out = &self.s[start..self.i];
                    self.i += 1;
                    return Some(Cow::Borrowed(out));
                }
                b'\\' => break,
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
        let mut out = self.s[start..self.i].to_owned();
        loop {
            match *b.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some(Cow::Owned(out));
                }
                b'\\' => {
                    self.i += 1;
                    let c = match *b.get(self.i)? {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            self.i += 1;
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                self.word("\\u")?;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            out.push(char::from_u32(code)?);
                            continue;
                        }
                        _ => return None,
                    };
                    out.push(c);
                    self.i += 1;
                }
                c if c < 0x20 => return None,
                _ => {
                    let ch = self.s[self.i..].chars().next()?;
                    out.push(ch);
                    self.i += ch.len_utf8();
                }
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.s.get(self.i..self.i + 4)?;
        if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.i += 4;
        u32::from_str_radix(h, 16).ok()
    }

    /// A number by JSON's grammar; integers that do not fit 64 bits and `-0` decline.
    fn number(&mut self) -> Option<Num> {
        self.ws();
        let b = self.s.as_bytes();
        let start = self.i;
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        let mut i = self.i;
        let neg = b.get(i) == Some(&b'-');
        if neg {
            i += 1;
        }
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                digits(&mut i);
            }
            _ => return None,
        }
        let mut float = false;
        if b.get(i) == Some(&b'.') {
            i += 1;
            float = true;
            if !digits(&mut i) {
                return None;
            }
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            float = true;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            if !digits(&mut i) {
                return None;
            }
        }
        self.i = i;
        let text = &self.s[start..i];
        if float {
            // serde_json's own parser, so that values equal the general decoder's bit for bit.
            let v: f64 = serde_json::from_str(text).ok()?;
            v.is_finite().then_some(Num::Float(v))
        } else if neg {
            let v: i64 = text.parse().ok()?;
            (v != 0).then_some(Num::Neg(v))
        } else {
            text.parse().ok().map(Num::Pos)
        }
    }

    /// Passes over any value, checking it.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|s, _| s.skip()),
            b'[' => self.items(b'[', b']', Self::skip),
            b't' => self.word("true"),
            b'f' => self.word("false"),
            b'n' => self.word("null"),
            _ => self.number().map(drop),
        }
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// The comma-separated items between `open` and `close`; `item` must consume one.
    fn items(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        self.eat(open)?;
        self.enter()?;
        if self.eat(close).is_none() {
            loop {
                item(self)?;
                match self.peek()? {
                    b',' => self.i += 1,
                    c if c == close => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// An object: `each` is called at every value with its key and must consume the value.
    fn object(
        &mut self,
        mut each: impl FnMut(&mut Self, Cow<'a, str>) -> Option<()>,
    ) -> Option<()> {
        self.items(b'{', b'}', |s| {
            if s.peek()? != b'"' {
                return None;
            }
            let key = s.string()?;
            s.eat(b':')?;
            each(s, key)
        })
    }

    /// A string value, or `None` after checking a value of another type.
    fn text_or_skip(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.peek()? == b'"' {
            Some(Some(self.string()?))
        } else {
            self.skip()?;
            Some(None)
        }
    }

    /// A non-negative integer, or a string that parses as one (Debezium's loose number fields);
    /// anything else is `None`, after checking it.
    fn loose_u64(&mut self) -> Option<Option<u64>> {
        Some(match self.peek()? {
            b'"' => self.string()?.parse::<u64>().ok(),
            b'-' | b'0'..=b'9' => match self.number()? {
                Num::Pos(v) => Some(v),
                _ => None,
            },
            _ => {
                self.skip()?;
                None
            }
        })
    }
}

/// How a column takes values.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Utf8,
    /// A signed or narrower unsigned integer column, held as i64 within its range.
    Int(i64, i64),
    UInt64,
    Float64,
    Boolean,
    /// Any other flat type: only nulls decode directly.
    NullOnly,
}

fn kind_of(dt: &DataType) -> Option<Kind> {
    Some(match dt {
        DataType::Utf8 => Kind::Utf8,
        DataType::Int8 => Kind::Int(i8::MIN.into(), i8::MAX.into()),
        DataType::Int16 => Kind::Int(i16::MIN.into(), i16::MAX.into()),
        DataType::Int32 => Kind::Int(i32::MIN.into(), i32::MAX.into()),
        DataType::Int64 => Kind::Int(i64::MIN, i64::MAX),
        DataType::UInt8 => Kind::Int(0, u8::MAX.into()),
        DataType::UInt16 => Kind::Int(0, u16::MAX.into()),
        DataType::UInt32 => Kind::Int(0, u32::MAX.into()),
        DataType::UInt64 => Kind::UInt64,
        DataType::Float64 => Kind::Float64,
        DataType::Boolean => Kind::Boolean,
        // Types the general decoder builds a column of (all null here); any other declines, so
        // that a type arrow-json refuses keeps failing the way it does there.
        DataType::Date32
        | DataType::Date64
        | DataType::Float32
        | DataType::Binary
        | DataType::LargeUtf8
        | DataType::Timestamp(_, None) => Kind::NullOnly,
        DataType::Timestamp(_, Some(tz)) if tz.as_ref() == "UTC" => Kind::NullOnly,
        DataType::Decimal128(p, s)
            if arrow::datatypes::validate_decimal_precision_and_scale::<Decimal128Type>(*p, *s)
                .is_ok() =>
        {
            Kind::NullOnly
        }
        _ => return None,
    })
}

/// One value of the row being decoded; strings are ranges of the row's text buffer.
#[derive(Clone, Copy, Debug)]
enum Cell {
    Absent,
    Null,
    Str(u32, u32),
    Num(Num),
    Bool(bool),
}

/// The columns being built.
enum Builder {
    Utf8(StringBuilder),
    Int(Int64Builder),
    UInt64(UInt64Builder),
    Float64(Float64Builder),
    Boolean(BooleanBuilder),
    NullOnly,
}

/// The table's columns and their builders.
struct Columns {
    fields: Vec<Field>,
    kinds: Vec<Kind>,
    index: HashMap<String, usize>,
    builders: Vec<Builder>,
    keys: Vec<usize>,
    partitions: Vec<usize>,
    position: Option<usize>,
    message_key: Option<usize>,
    rows: usize,
    deletes: Vec<bool>,
}

impl Columns {
    fn new(spec: &DecodeSpec, capacity: usize, text_bytes: usize) -> Option<Self> {
        let schema = spec.shape.schema.as_ref()?;
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let kinds = fields
            .iter()
            .map(|f| kind_of(f.data_type()))
            .collect::<Option<Vec<_>>>()?;
        let index: HashMap<String, usize> = fields
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name().clone(), i))
            .collect();
        let utf8 = |name: &str| index.get(name).copied().filter(|i| kinds[*i] == Kind::Utf8);
        let position = match spec.shape.ordering_field.as_deref() {
            Some(SOURCE_POSITION_FIELD) => Some(utf8(SOURCE_POSITION_FIELD)?),
            _ => None,
        };
        let message_key = match &spec.message_key_field {
            Some(name) => Some(utf8(name)?),
            None => None,
        };
        let find = |names: &[String]| {
            names
                .iter()
                .map(|n| index.get(n).copied())
                .collect::<Option<Vec<_>>>()
        };
        let keys = find(&spec.shape.key_fields)?;
        let partitions = find(&spec.shape.partition_fields)?;
        let strings = kinds.iter().filter(|k| **k == Kind::Utf8).count().max(1);
        let builders = kinds
            .iter()
            .map(|k| match k {
                Kind::Utf8 => {
                    Builder::Utf8(StringBuilder::with_capacity(capacity, text_bytes / strings))
                }
                Kind::Int(..) => Builder::Int(Int64Builder::with_capacity(capacity)),
                Kind::UInt64 => Builder::UInt64(UInt64Builder::with_capacity(capacity)),
                Kind::Float64 => Builder::Float64(Float64Builder::with_capacity(capacity)),
                Kind::Boolean => Builder::Boolean(BooleanBuilder::with_capacity(capacity)),
                Kind::NullOnly => Builder::NullOnly,
            })
            .collect();
        Some(Self {
            fields,
            kinds,
            index,
            builders,
            keys,
            partitions,
            position,
            message_key,
            rows: 0,
            deletes: Vec::with_capacity(capacity),
        })
    }

    /// Decodes an image object into `cells`, checking each value against its column.
    fn image<'a>(&self, scan: &mut Scan<'a>, cells: &mut [Cell], text: &mut String) -> Option<()> {
        cells.fill(Cell::Absent);
        scan.object(|s, key| {
            let i = *self.index.get(key.as_ref())?;
            cells[i] = match (s.peek()?, self.kinds[i]) {
                (b'n', _) => {
                    s.word("null")?;
                    Cell::Null
                }
                (b'"', Kind::Utf8) => {
                    let v = s.string()?;
                    push_text(text, &v)?
                }
                (b't', Kind::Boolean) => {
                    s.word("true")?;
                    Cell::Bool(true)
                }
                (b'f', Kind::Boolean) => {
                    s.word("false")?;
                    Cell::Bool(false)
                }
                (b'-' | b'0'..=b'9', kind) => {
                    let n = s.number()?;
                    let fits = match (kind, n) {
                        (Kind::Int(_, hi), Num::Pos(v)) => i64::try_from(v).is_ok_and(|v| v <= hi),
                        (Kind::Int(lo, _), Num::Neg(v)) => v >= lo,
                        (Kind::UInt64, Num::Pos(_)) | (Kind::Float64, _) => true,
                        _ => false,
                    };
                    if !fits {
                        return None;
                    }
                    Cell::Num(n)
                }
                _ => return None,
            };
            Some(())
        })
    }

    /// Applies the message key and source position columns and checks the record key, then appends
    /// the row.
    fn finish(
        &mut self,
        cells: &mut [Cell],
        text: &mut String,
        key: Option<&str>,
        position: Option<&str>,
        delete: bool,
    ) -> Option<()> {
        if let Some(i) = self.message_key {
            cells[i] = push_text(text, key?)?;
        }
        if let Some(i) = self.position {
            cells[i] = push_text(text, position?)?;
        }
        for &k in &self.keys {
            match cells[k] {
                Cell::Absent | Cell::Null => return None,
                Cell::Str(a, b) if a == b => return None,
                _ => {}
            }
        }
        for (b, cell) in self.builders.iter_mut().zip(cells.iter()) {
            match (b, *cell) {
                (Builder::Utf8(b), Cell::Str(x, y)) => {
                    b.append_value(&text[x as usize..y as usize])
                }
                (Builder::Utf8(b), _) => b.append_null(),
                (Builder::Int(b), Cell::Num(Num::Pos(v))) => b.append_value(v as i64),
                (Builder::Int(b), Cell::Num(Num::Neg(v))) => b.append_value(v),
                (Builder::Int(b), _) => b.append_null(),
                (Builder::UInt64(b), Cell::Num(Num::Pos(v))) => b.append_value(v),
                (Builder::UInt64(b), _) => b.append_null(),
                (Builder::Float64(b), Cell::Num(Num::Pos(v))) => b.append_value(v as f64),
                (Builder::Float64(b), Cell::Num(Num::Neg(v))) => b.append_value(v as f64),
                (Builder::Float64(b), Cell::Num(Num::Float(v))) => b.append_value(v),
                (Builder::Float64(b), _) => b.append_null(),
                (Builder::Boolean(b), Cell::Bool(v)) => b.append_value(v),
                (Builder::Boolean(b), _) => b.append_null(),
                (Builder::NullOnly, _) => {}
            }
        }
        self.rows += 1;
        self.deletes.push(delete);
        Some(())
    }

    fn batch(self) -> Option<ChangeBatch> {
        let n = self.rows;
        let columns = self
            .builders
            .into_iter()
            .zip(&self.fields)
            .map(|(b, f)| -> Option<ArrayRef> {
                Some(match b {
                    Builder::Utf8(mut b) => Arc::new(b.finish()),
                    Builder::Int(mut b) => {
                        let a: ArrayRef = Arc::new(b.finish());
                        // Every value was checked against the column's range.
                        arrow::compute::cast(&a, f.data_type()).ok()?
                    }
                    Builder::UInt64(mut b) => Arc::new(b.finish()),
                    Builder::Float64(mut b) => Arc::new(b.finish()),
                    Builder::Boolean(mut b) => Arc::new(b.finish()),
                    Builder::NullOnly => new_null_array(f.data_type(), n),
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let schema = Arc::new(Schema::new(self.fields));
        let rows = RecordBatch::try_new(schema, columns).ok()?;
        Some(ChangeBatch::new(rows, BooleanArray::from(self.deletes)))
    }
}

fn push_text(text: &mut String, v: &str) -> Option<Cell> {
    let a = u32::try_from(text.len()).ok()?;
    text.push_str(v);
    Some(Cell::Str(a, u32::try_from(text.len()).ok()?))
}

/// Whether two cells hold equal JSON values (as `serde_json::Value` compares them).
fn same(text: &str, a: Cell, b: Cell) -> bool {
    match (a, b) {
        (Cell::Null, Cell::Null) => true,
        (Cell::Str(a0, a1), Cell::Str(b0, b1)) => {
            text[a0 as usize..a1 as usize] == text[b0 as usize..b1 as usize]
        }
        (Cell::Num(x), Cell::Num(y)) => x == y,
        (Cell::Bool(x), Cell::Bool(y)) => x == y,
        _ => false,
    }
}

/// The parts of a Debezium event's top level the decoder needs.
#[derive(Default)]
struct Event<'a> {
    op: Option<Cow<'a, str>>,
    before: Option<usize>,
    after: Option<usize>,
    file: Option<Cow<'a, str>>,
    pos: Option<u64>,
    row: Option<u64>,
    lsn: Option<u64>,
    source_ts: Option<u64>,
    ts_ms: Option<u64>,
    wrapped: bool,
}

/// Scans a Debezium event's top level: `None` for a malformed event, `Some(None)` for a `null`
/// value (a tombstone).
fn event(s: &str) -> Option<Option<Event<'_>>> {
    let mut scan = Scan::new(s);
    if scan.peek()? == b'n' {
        scan.word("null")?;
        return scan.at_end().then_some(None);
    }
    let mut e = Event::default();
    scan.object(|s, key| {
        match key.as_ref() {
            "op" => e.op = s.text_or_skip()?,
            "before" | "after" => {
                let at = (s.peek()? == b'{').then_some(s.i);
                s.skip()?;
                if key == "before" {
                    e.before = at;
                } else {
                    e.after = at;
                }
            }
            "source" => {
                e.file = None;
                e.pos = None;
                e.row = None;
                e.lsn = None;
                e.source_ts = None;
                if s.peek()? == b'{' {
                    s.object(|s, k| {
                        match k.as_ref() {
                            "file" => e.file = s.text_or_skip()?,
                            "pos" => e.pos = s.loose_u64()?,
                            "row" => e.row = s.loose_u64()?,
                            "lsn" => e.lsn = s.loose_u64()?,
                            "ts_ms" => e.source_ts = s.loose_u64()?,
                            _ => s.skip()?,
                        }
                        Some(())
                    })?;
                } else {
                    s.skip()?;
                }
            }
            "ts_ms" => e.ts_ms = s.loose_u64()?,
            "schema" | "payload" => {
                e.wrapped = true;
                s.skip()?;
            }
            _ => s.skip()?,
        }
        Some(())
    })?;
    scan.at_end().then_some(Some(e))
}

/// One batch's decoding: the columns, the cells of the two images of the message at hand, the
/// text its strings point into, its source position, and the tombstones seen.
struct Batch {
    cols: Columns,
    after: Vec<Cell>,
    before: Vec<Cell>,
    text: String,
    position: String,
    tombstones: usize,
}

/// Runs `per_message` on every message's value (with the row's text and position cleared) and
/// counts the tombstones; `None` as soon as a message declines.
fn decode_each(
    msgs: &[Message],
    spec: &DecodeSpec,
    mut per_message: impl FnMut(&mut Batch, &Message, &[u8]) -> Option<()>,
) -> Option<DecodedMessages> {
    let mut b = Batch::new(msgs, spec)?;
    for m in msgs {
        let Some(value) = &m.value else {
            b.tombstones += 1;
            continue;
        };
        b.text.clear();
        b.position.clear();
        per_message(&mut b, m, value)?;
    }
    let batch = if b.cols.rows == 0 {
        None
    } else {
        Some(b.cols.batch()?)
    };
    Some(DecodedMessages {
        batch,
        tombstones: b.tombstones,
        rejected: Vec::new(),
    })
}

/// A Debezium event's source fields: binlog file, position and row, Postgres LSN, event time.
type Source<'a> = (
    Option<&'a str>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
);

impl Batch {
    fn new(msgs: &[Message], spec: &DecodeSpec) -> Option<Self> {
        let bytes: usize = msgs
            .iter()
            .map(|m| m.value.as_ref().map_or(0, Vec::len))
            .sum();
        let cols = Columns::new(spec, msgs.len(), bytes)?;
        let width = cols.fields.len();
        Some(Self {
            cols,
            after: vec![Cell::Absent; width],
            before: vec![Cell::Absent; width],
            text: String::new(),
            position: String::new(),
            tombstones: 0,
        })
    }

    /// Appends the `after` image as a plain row: the message key column, the Kafka offset as the
    /// source position.
    fn plain_row(&mut self, m: &Message, key: Option<&str>) -> Option<()> {
        push_padded(&mut self.position, u64::try_from(m.offset).ok()?, 20);
        let position = Some(self.position.as_str());
        self.cols
            .finish(&mut self.after, &mut self.text, key, position, false)
    }

    /// Appends the rows of a Debezium change — `(op, before, after, message key)` — whose images
    /// `read` decodes, at its source position: the op picks the image (`after` for c, r and u;
    /// `before`, as a delete, for d), and an update whose `before` image holds other partition
    /// values also deletes the row from its old partition.
    fn change<I: Copy>(
        &mut self,
        (op, before, after, key): (Option<&str>, Option<I>, Option<I>, Option<&str>),
        (file, pos, row, lsn, ts_ms): Source<'_>,
        read: impl Fn(&Columns, I, &mut [Cell], &mut String) -> Option<()>,
    ) -> Option<()> {
        let position = write_position(&mut self.position, file, pos, row, lsn, ts_ms)
            .then_some(self.position.as_str());
        let (image, delete) = match op? {
            "c" | "r" | "u" => (after?, false),
            "d" => (before?, true),
            _ => return None,
        };
        let cols = &mut self.cols;
        read(cols, image, &mut self.after, &mut self.text)?;
        if op == Some("u")
            && !cols.partitions.is_empty()
            && let Some(b) = before
        {
            read(cols, b, &mut self.before, &mut self.text)?;
            let (old, new, text) = (&self.before, &self.after, &self.text);
            let moved = cols
                .partitions
                .iter()
                .any(|&p| !matches!(old[p], Cell::Absent) && !same(text, old[p], new[p]));
            if moved {
                cols.finish(&mut self.before, &mut self.text, key, position, true)?;
            }
        }
        cols.finish(&mut self.after, &mut self.text, key, position, delete)
    }
}

/// The fields of an Avro record value (inside a union), `Some(None)` for null; `None` (decline) for
/// anything else.
fn avro_record(v: &Avro) -> Option<Option<&[(String, Avro)]>> {
    match v {
        Avro::Union(_, inner) => avro_record(inner),
        Avro::Record(fields) => Some(Some(fields)),
        Avro::Null => Some(None),
        _ => None,
    }
}

/// An Avro value as the general decoder's JSON text field (`as_str`): strings and enum symbols
/// are text, other scalars are not; `None` (decline) for anything else.
fn avro_text(v: &Avro) -> Option<Option<&str>> {
    match v {
        Avro::Union(_, inner) => avro_text(inner),
        Avro::String(s) | Avro::Enum(_, s) => Some(Some(s)),
        Avro::Null | Avro::Boolean(_) | Avro::Int(_) | Avro::Long(_) | Avro::Double(_) => {
            Some(None)
        }
        _ => None,
    }
}

/// An Avro value as Debezium's loose number fields: a non-negative integer, or text that parses
/// as one; `None` (decline) for anything but plain scalars.
fn avro_loose_u64(v: &Avro) -> Option<Option<u64>> {
    match v {
        Avro::Union(_, inner) => avro_loose_u64(inner),
        Avro::Long(n) => Some(u64::try_from(*n).ok()),
        Avro::Int(n) => Some(u64::try_from(*n).ok()),
        Avro::String(s) | Avro::Enum(_, s) => Some(s.parse().ok()),
        Avro::Null | Avro::Boolean(_) | Avro::Double(_) => Some(None),
        _ => None,
    }
}

impl Columns {
    /// Decodes an Avro image record into `cells`, checking each value against its column: only
    /// strings, booleans, integers and finite doubles (or null) decode directly.
    fn image_avro(
        &self,
        fields: &[(String, Avro)],
        cells: &mut [Cell],
        text: &mut String,
    ) -> Option<()> {
        cells.fill(Cell::Absent);
        for (name, v) in fields {
            let i = *self.index.get(name.as_str())?;
            let v = match v {
                Avro::Union(_, inner) => inner.as_ref(),
                v => v,
            };
            let int = |n: i64| match self.kinds[i] {
                Kind::Int(lo, hi) if (lo..=hi).contains(&n) => Some(num_of(n)),
                Kind::UInt64 if n >= 0 => Some(num_of(n)),
                Kind::Float64 => Some(num_of(n)),
                _ => None,
            };
            cells[i] = match (v, self.kinds[i]) {
                (Avro::Null, _) => Cell::Null,
                (Avro::String(v), Kind::Utf8) => push_text(text, v)?,
                (Avro::Boolean(b), Kind::Boolean) => Cell::Bool(*b),
                (Avro::Int(n), _) => Cell::Num(int(i64::from(*n))?),
                (Avro::Long(n), _) => Cell::Num(int(*n)?),
                (Avro::Double(f), Kind::Float64) if f.is_finite() => Cell::Num(Num::Float(*f)),
                _ => return None,
            };
        }
        Some(())
    }
}

/// An integer as serde_json classifies it.
fn num_of(n: i64) -> Num {
    match u64::try_from(n) {
        Ok(v) => Num::Pos(v),
        Err(_) => Num::Neg(n),
    }
}

/// Whether the general decoder turns every part of a datum into JSON (it refuses a whole datum
/// for one NaN or infinity, a duration, or a decimal it cannot convert, wherever it is).
fn has_json_form(v: &Avro) -> bool {
    match v {
        Avro::Float(f) => f.is_finite(),
        Avro::Double(f) => f.is_finite(),
        Avro::Duration(_) | Avro::Decimal(_) => false,
        Avro::Union(_, inner) => has_json_form(inner),
        Avro::Array(items) => items.iter().all(has_json_form),
        Avro::Map(m) => m.values().all(has_json_form),
        Avro::Record(fields) => fields.iter().all(|(_, v)| has_json_form(v)),
        _ => true,
    }
}

/// The parts of an Avro Debezium event's top level the decoder needs.
#[derive(Default)]
struct AvroEvent<'a> {
    op: Option<&'a str>,
    before: Option<&'a [(String, Avro)]>,
    after: Option<&'a [(String, Avro)]>,
    file: Option<&'a str>,
    pos: Option<u64>,
    row: Option<u64>,
    lsn: Option<u64>,
    source_ts: Option<u64>,
    ts_ms: Option<u64>,
}

fn avro_event(top: &[(String, Avro)]) -> Option<AvroEvent<'_>> {
    let mut e = AvroEvent::default();
    for (k, v) in top {
        match k.as_str() {
            "op" => e.op = avro_text(v)?,
            "before" => e.before = avro_record(v)?,
            "after" => e.after = avro_record(v)?,
            "source" => {
                let fields = match v {
                    Avro::Union(_, inner) => inner.as_ref(),
                    v => v,
                };
                match fields {
                    Avro::Record(fields) => {
                        for (k, v) in fields {
                            match k.as_str() {
                                "file" => e.file = avro_text(v)?,
                                "pos" => e.pos = avro_loose_u64(v)?,
                                "row" => e.row = avro_loose_u64(v)?,
                                "lsn" => e.lsn = avro_loose_u64(v)?,
                                "ts_ms" => e.source_ts = avro_loose_u64(v)?,
                                _ => {}
                            }
                        }
                    }
                    Avro::Null => {}
                    _ => return None,
                }
            }
            "ts_ms" => e.ts_ms = avro_loose_u64(v)?,
            _ => {}
        }
    }
    Some(e)
}

/// Decodes a batch of Confluent-framed Avro messages directly, or `None` to leave it to the general
/// decoder: every schema the batch names must be one the table takes, and every image hold only the
/// table's columns with flat values; the message key column is left to the general decoder.
fn decode_avro(msgs: &[Message], spec: &DecodeSpec) -> Option<DecodedMessages> {
    if spec.message_key_field.is_some() {
        return None;
    }
    let schemas = spec.schemas.as_deref()?;
    // A reader per schema id the batch names, once the table is known to take that schema.
    let mut readers = HashMap::new();
    decode_each(msgs, spec, |b, m, value| {
        let (id, datum) = frame(value).ok()?;
        let (ws, reader) = match readers.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let ws = schemas.get(&id)?.as_ref().ok()?;
                crate::messages::direct_takes(ws, spec).then_some(())?;
                e.insert((ws.as_ref(), datum_reader(ws).ok()?))
            }
        };
        let datum = read_datum(ws, reader, datum).ok()?;
        if !has_json_form(&datum) {
            return None;
        }
        let Avro::Record(top) = datum else {
            return None;
        };
        match spec.kind {
            DecoderKind::Json => {
                b.cols.image_avro(&top, &mut b.after, &mut b.text)?;
                b.plain_row(m, None)
            }
            DecoderKind::Debezium => {
                let e = avro_event(&top)?;
                let source = (e.file, e.pos, e.row, e.lsn, e.ts_ms.or(e.source_ts));
                let change = (e.op, e.before, e.after, None);
                b.change(change, source, |cols, image, cells, text| {
                    cols.image_avro(image, cells, text)
                })
            }
        }
    })
}

/// Decodes a batch directly, or `None` to leave it to the general decoder.
pub(crate) fn decode(msgs: &[Message], spec: &DecodeSpec) -> Option<DecodedMessages> {
    if spec.format == crate::config::MessageFormat::Avro {
        return decode_avro(msgs, spec);
    }
    decode_each(msgs, spec, |b, m, value| {
        let value = std::str::from_utf8(value).ok()?;
        let key = match (&b.cols.message_key, &m.key) {
            (Some(_), Some(k)) => Some(std::str::from_utf8(k).ok()?),
            _ => None,
        };
        match spec.kind {
            DecoderKind::Json => {
                let mut scan = Scan::new(value);
                if scan.peek()? != b'{' {
                    return None;
                }
                b.cols.image(&mut scan, &mut b.after, &mut b.text)?;
                if !scan.at_end() {
                    return None;
                }
                b.plain_row(m, key)
            }
            DecoderKind::Debezium => {
                let Some(e) = event(value)? else {
                    b.tombstones += 1;
                    return Some(());
                };
                if e.wrapped {
                    return None;
                }
                let source = (
                    e.file.as_deref(),
                    e.pos,
                    e.row,
                    e.lsn,
                    e.ts_ms.or(e.source_ts),
                );
                let change = (e.op.as_deref(), e.before, e.after, key);
                b.change(change, source, |cols, at, cells, text| {
                    cols.image(&mut Scan::new(&value[at..]), cells, text)
                })
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{decode_general, decode_with_prefix};
    use crate::rows::TableShape;

    /// xorshift: the same cases on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn chance(&mut self, percent: u64) -> bool {
            self.below(100) < percent
        }
        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.below(xs.len() as u64) as usize]
        }
    }

    fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("n", DataType::Int32, true),
            Field::new("small", DataType::UInt8, true),
            Field::new("big", DataType::UInt64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("flag", DataType::Boolean, true),
            Field::new("region", DataType::Utf8, true),
            Field::new("day", DataType::Date32, true),
            Field::new(SOURCE_POSITION_FIELD, DataType::Utf8, true),
        ]))
    }

    /// Decodes a case's batch directly (for a new table: with a prefix's schema) and with the
    /// general decoder: only a nasty batch or a new table's may decline; an accepted batch must be
    /// the general decoder's. Whether it was accepted.
    fn compare(
        case: usize,
        msgs: &[Message],
        spec: &DecodeSpec,
        nasty: bool,
        new_table: bool,
    ) -> bool {
        let direct = if new_table {
            // The general decoder takes every batch a prefix's schema does not fit.
            decode_with_prefix(msgs, spec, false, 3)
                .ok()
                .filter(|_| msgs.len() > 6)
        } else {
            decode(msgs, spec)
        };
        let general = decode_general(msgs, spec, false);
        let Some(d) = direct else {
            assert!(
                nasty || new_table,
                "case {case}: a clean batch declined: {msgs:?}"
            );
            return false;
        };
        let g = general.unwrap_or_else(|e| {
            panic!("case {case}: direct accepted what the general decoder rejects: {e}\n{msgs:?}")
        });
        assert_eq!(d.tombstones, g.tombstones, "case {case}");
        assert!(g.rejected.is_empty());
        match (d.batch, g.batch) {
            (None, None) => {}
            (Some(d), Some(g)) => {
                assert_eq!(d.rows, g.rows, "case {case}: {msgs:?}");
                assert_eq!(d.is_delete, g.is_delete, "case {case}: {msgs:?}");
            }
            (d, g) => panic!("case {case}: {d:?} vs {g:?}"),
        }
        true
    }

    /// The spec of a case: plain rows or Debezium events, into an existing or a new table.
    fn test_spec(plain: bool, new_table: bool, partitioned: bool) -> DecodeSpec {
        DecodeSpec {
            kind: if plain {
                DecoderKind::Json
            } else {
                DecoderKind::Debezium
            },
            shape: TableShape {
                schema: (!new_table).then(schema),
                key_fields: vec!["id".into()],
                ordering_field: Some(SOURCE_POSITION_FIELD.into()),
                partition_fields: if partitioned {
                    vec!["region".into()]
                } else {
                    vec![]
                },
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// A value for a column: mostly one that fits, sometimes one of the cases that must decline or
    /// must be decoded exactly (escapes, extremes).
    fn value(r: &mut Rng, column: &str, nasty: bool) -> String {
        if nasty && r.chance(8) {
            return r
                .pick(&[
                    "1.0",
                    "7.9",
                    "-0",
                    "1e400",
                    "1e-400",
                    "\"12\"",
                    "true",
                    "{}",
                    "[1]",
                    "[]",
                    "{\"a\":[1,{\"b\":null}]}",
                    "18446744073709551616",
                    "-9223372036854775809",
                    "\"\"",
                    "\"\\ud800\"",
                    "\"a\\u00e9\\n\\\"\"",
                    "\"\\ud83d\\ude00\"",
                    "01",
                    "1.",
                    "-",
                    "nul",
                    "\"\u{1}\"",
                    "2147483648",
                    "256",
                    "-1",
                ])
                .to_owned();
        }
        if r.chance(6) {
            return "null".into();
        }
        match column {
            "id" => (r.below(50) as i64 - 5).to_string(),
            "name" => format!(
                "\"{}\"",
                r.pick(&[
                    "a",
                    "b",
                    "",
                    "é",
                    "x\\ty",
                    "\\u0041",
                    "long name with spaces"
                ])
            ),
            "n" => r
                .pick(&["0", "-2147483648", "2147483647", "42", "-7"])
                .to_owned(),
            "small" => r.pick(&["0", "255", "17"]).to_owned(),
            "big" => r
                .pick(&["0", "18446744073709551615", "9223372036854775808", "5"])
                .to_owned(),
            "x" => r
                .pick(&[
                    "0.1",
                    "-2.5e3",
                    "3",
                    "-4",
                    "1.7976931348623157e308",
                    "5e-324",
                    "0.30000000000000004",
                ])
                .to_owned(),
            "flag" => r.pick(&["true", "false"]).to_owned(),
            "region" => format!("\"{}\"", r.pick(&["eu", "us", "ap"])),
            _ => "null".into(),
        }
    }

    fn image(r: &mut Rng, id: i64, nasty: bool) -> String {
        let mut parts = vec![format!("\"id\":{id}")];
        for c in ["name", "n", "small", "big", "x", "flag", "region", "day"] {
            if !r.chance(10) {
                parts.push(format!("\"{c}\":{}", value(r, c, nasty)));
            }
        }
        if nasty && r.chance(3) {
            parts.push("\"unknown\":1".into());
        }
        if nasty && r.chance(3) {
            parts.push(format!("\"region\":{}", value(r, "region", nasty)));
        }
        if nasty && r.chance(3) {
            parts.retain(|p| !p.starts_with("\"id\""));
        }
        // Field order varies.
        let k = r.below(parts.len() as u64) as usize;
        parts.rotate_left(k);
        format!("{{{}}}", parts.join(","))
    }

    fn source(r: &mut Rng, pos: u64, nasty: bool) -> String {
        match if nasty { r.below(7) } else { 0 } {
            0 => format!(
                r#"{{"version":"2.5","file":"mysql-bin.00000{}","pos":{pos},"row":{},"snapshot":"false"}}"#,
                r.below(3) + 1,
                r.below(3)
            ),
            1 => format!(r#"{{"file":"bin.7","pos":"{pos}"}}"#),
            2 => format!(r#"{{"lsn":{pos},"ts_ms":5}}"#),
            3 => format!(r#"{{"ts_ms":"{pos}"}}"#),
            4 => r#"{"file":3,"pos":-1}"#.into(),
            5 => "null".into(),
            _ => r#"{"file":"f.x","pos":1.5,"row":"+2"}"#.into(),
        }
    }

    fn event(r: &mut Rng, pos: u64, nasty: bool) -> Option<String> {
        if nasty && r.chance(3) {
            return None;
        }
        if nasty && r.chance(2) {
            return Some(
                r.pick(&[
                    "null",
                    " null ",
                    "{not json",
                    "{\"op\":\"c\"",
                    "[]",
                    "{}",
                    "{\"op\":\"c\",}",
                    "{\"schema\":{},\"payload\":null}",
                ])
                .to_owned(),
            );
        }
        let id = r.below(20) as i64;
        let op = if nasty && r.chance(3) {
            r.pick(&["x", "C", ""])
        } else {
            r.pick(&["c", "r", "u", "u", "d"])
        };
        let (before, after) = match op {
            "d" => (image(r, id, nasty), "null".to_owned()),
            "c" | "r" => ("null".to_owned(), image(r, id, nasty)),
            _ => (
                if r.chance(70) {
                    image(r, id, nasty)
                } else {
                    "null".to_owned()
                },
                image(r, id, nasty),
            ),
        };
        let ts = if nasty && r.chance(20) {
            String::new()
        } else {
            format!(",\"ts_ms\":{}", 1_700_000_000_000u64 + pos)
        };
        let src = source(r, pos, nasty);
        let mut fields = vec![
            format!("\"before\":{before}"),
            format!("\"after\":{after}"),
            format!("\"source\":{src}"),
            format!("\"op\":\"{op}\"{ts}"),
        ];
        if nasty && r.chance(5) {
            fields.push("\"op\":7".into());
        }
        if nasty && r.chance(5) {
            fields.push(
                "\"transaction\":{\"id\":\"t\",\"total_order\":1,\"l\":[1,2,{\"x\":[]}]}".into(),
            );
        }
        let k = r.below(fields.len() as u64) as usize;
        fields.rotate_left(k);
        let mut text = format!("{{{}}}", fields.join(","));
        if nasty && r.chance(3) {
            let cut = r.below(text.len() as u64) as usize;
            text.truncate(cut);
        }
        if nasty && r.chance(3) {
            text.push_str(r.pick(&[" ", "\n", "x", "{}"]));
        }
        Some(text)
    }

    fn message(offset: i64, key: Option<String>, value: Option<String>) -> Message {
        Message {
            topic: "t".into(),
            partition: 0,
            offset,
            key: key.map(String::into_bytes),
            value: value.map(String::into_bytes),
        }
    }

    /// A column type arrow-json cannot decode declines the batch, even when every value is null:
    /// the general decoder fails on it.
    #[test]
    fn column_types_the_general_decoder_refuses_decline() {
        let event = r#"{"op":"c","after":{"id":1},"source":{"file":"b.1","pos":4}}"#;
        for (dt, accepted) in [
            (DataType::Decimal128(40, 2), false),
            (DataType::Decimal128(10, 2), true),
            (DataType::Time32(arrow::datatypes::TimeUnit::Second), false),
            (DataType::Date32, true),
        ] {
            let spec = DecodeSpec {
                kind: DecoderKind::Debezium,
                shape: TableShape {
                    schema: Some(Arc::new(Schema::new(vec![
                        Field::new("id", DataType::Int64, false),
                        Field::new(SOURCE_POSITION_FIELD, DataType::Utf8, true),
                        Field::new("amount", dt.clone(), true),
                    ]))),
                    key_fields: vec!["id".into()],
                    ordering_field: Some(SOURCE_POSITION_FIELD.into()),
                    ..Default::default()
                },
                message_key_field: None,
                ..Default::default()
            };
            let msgs = [message(0, None, Some(event.to_owned()))];
            let direct = decode(&msgs, &spec);
            assert_eq!(direct.is_some(), accepted, "{dt}");
            let general = decode_general(&msgs, &spec, false);
            if let Some(d) = direct {
                let g = general.expect("the general decoder takes it too");
                assert_eq!(d.batch.map(|b| b.rows), g.batch.map(|b| b.rows), "{dt}");
            }
        }
    }

    /// Compares the direct decoder with the general one on random batches: wherever the direct
    /// decoder accepts a batch, the general decoder returns exactly the same rows, deletes and
    /// tombstones; every batch without nasty cases is accepted.
    #[test]
    fn direct_decoding_equals_the_general_decoder() {
        let mut r = Rng(0x2545_f491_4f6c_dd1d);
        let mut accepted = 0;
        for case in 0..3000 {
            let nasty = case % 2 == 1;
            let partitioned = r.chance(50);
            let json = case % 5 == 4;
            // A fifth of the batches are a new table's: the schema comes from a prefix.
            let new_table = case % 10 < 2;
            let spec = DecodeSpec {
                message_key_field: (json && r.chance(50)).then(|| "name".to_owned()),
                ..test_spec(json, new_table, partitioned)
            };
            let n = 1 + r.below(if nasty && !new_table { 4 } else { 30 });
            let msgs: Vec<Message> = (0..n)
                .map(|i| {
                    let value = if json {
                        (!(nasty && r.chance(5))).then(|| image(&mut r, i as i64, nasty))
                    } else {
                        event(&mut r, 1000 + i, nasty)
                    };
                    let key = (!(nasty && r.chance(10))).then(|| {
                        if nasty && r.chance(10) {
                            "".into()
                        } else {
                            format!("k{i}")
                        }
                    });
                    message(i as i64, key, value)
                })
                .collect();
            accepted += usize::from(compare(case, &msgs, &spec, nasty, new_table));
        }
        assert!(accepted > 1500, "accepted {accepted} of 3000");
    }

    /// A field of a generated Avro writer schema: name, type, nullable.
    type AvroField = (&'static str, &'static str, bool);

    /// Writer schemas of the Avro cases (`after` images; version 6's `before` differs): the
    /// table's columns (0), a column the table lacks (1), a type the table's column cannot take (2),
    /// no record key field (3), types that decline by value (enum, float, bytes, a Debezium date)
    /// (4), a source block with text positions (5), a `before` image whose `n` is a Debezium date
    /// (6), unions of several types (no Connect type: only the values are checked) (7).
    fn avro_images() -> Vec<Vec<AvroField>> {
        let base: Vec<AvroField> = vec![
            ("id", "long", false),
            ("name", "string", true),
            ("n", "int", true),
            ("x", "double", true),
            ("flag", "boolean", true),
            ("region", "string", true),
        ];
        let with = |extra: &[AvroField], drop: &[&str]| -> Vec<AvroField> {
            let mut f: Vec<AvroField> = base
                .iter()
                .filter(|(n, ..)| !drop.contains(n))
                .copied()
                .collect();
            f.extend_from_slice(extra);
            f
        };
        vec![
            base.clone(),
            with(&[("extra", "string", true)], &[]),
            with(&[("n", "long", true)], &["n"]),
            with(&[], &["id"]),
            with(
                &[
                    ("name", "enum", true),
                    ("x", "float", true),
                    ("region", "bytes", false),
                    ("day", "date", true),
                ],
                &["name", "x", "region"],
            ),
            base.clone(),
            base.clone(),
            with(
                &[
                    ("x", "multi", false),
                    ("n", "multi", false),
                    ("small", "multi", false),
                    ("big", "multi", false),
                ],
                &["x", "n"],
            ),
        ]
    }

    /// The `before` image of version 6: `n` is a Debezium date.
    fn avro_before_v6() -> Vec<AvroField> {
        let mut f = avro_images()[0].clone();
        for field in &mut f {
            if field.0 == "n" {
                field.1 = "date";
            }
        }
        f
    }

    fn avro_type(t: &str) -> serde_json::Value {
        use serde_json::json;
        match t {
            "enum" => json!({"type": "enum", "name": "E", "symbols": ["a", "b"]}),
            "date" => json!({"type": "int", "connect.name": "io.debezium.time.Date"}),
            "multi" => json!(["null", "long", "double", "string"]),
            t => json!(t),
        }
    }

    fn avro_record_schema(name: &str, image: &[AvroField]) -> serde_json::Value {
        use serde_json::json;
        let fields: Vec<serde_json::Value> = image
            .iter()
            .map(|(name, t, nullable)| {
                if *nullable {
                    json!({"name": name, "type": ["null", avro_type(t)], "default": null})
                } else {
                    json!({"name": name, "type": avro_type(t)})
                }
            })
            .collect();
        json!({"type": "record", "name": name, "fields": fields})
    }

    fn avro_schema_text(version: usize, image: &[AvroField], debezium: bool) -> String {
        use serde_json::json;
        let value = avro_record_schema("Value", image);
        if !debezium {
            return value.to_string();
        }
        let (before, after) = if version == 6 {
            (avro_record_schema("Old", &avro_before_v6()), value)
        } else {
            (value, json!("Value"))
        };
        let source = if version == 5 {
            json!({"type": "record", "name": "Source", "fields": [
                {"name": "file", "type": ["null", "string"]}, {"name": "pos", "type": "string"},
                {"name": "lsn", "type": ["null", "long"]}]})
        } else {
            json!({"type": "record", "name": "Source", "fields": [
                {"name": "file", "type": "string"}, {"name": "pos", "type": "long"},
                {"name": "row", "type": "int"}]})
        };
        json!({"type": "record", "name": "Envelope", "fields": [
            {"name": "before", "type": ["null", before], "default": null},
            {"name": "after", "type": ["null", after], "default": null},
            {"name": "source", "type": source},
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": ["null", "long"], "default": null}]})
        .to_string()
    }

    fn avro_value(r: &mut Rng, name: &str, t: &str, nasty: bool, id: i64) -> Avro {
        match (name, t) {
            ("id", _) => Avro::Long(id),
            (_, "string") => {
                Avro::String(r.pick(&["a", "", "é", "eu", "us", "ap", "x\ty"]).to_owned())
            }
            (_, "int") => Avro::Int([0, i32::MIN, i32::MAX, 42, -7][r.below(5) as usize]),
            (_, "long") => Avro::Long([0, i64::from(i32::MAX) + 1, -3][r.below(3) as usize]),
            (_, "double") => Avro::Double(if nasty && r.chance(10) {
                f64::NAN
            } else {
                [0.1, -2.5e3, 3.0, f64::MAX, 5e-324][r.below(5) as usize]
            }),
            (_, "boolean") => Avro::Boolean(r.chance(50)),
            (_, "enum") => Avro::Enum(0, "a".into()),
            (_, "float") => Avro::Float(1.5),
            (_, "bytes") => Avro::Bytes(vec![1, 2]),
            (_, "date") => Avro::Int(19_000),
            // ["null", "long", "double", "string"]
            (column, "multi") => {
                let long = |v: i64| Avro::Union(1, Box::new(Avro::Long(v)));
                match (column, nasty && r.chance(20)) {
                    (_, true) => match r.below(4) {
                        0 => long(-1),
                        1 => long(256),
                        2 => Avro::Union(3, Box::new(Avro::String("7".into()))),
                        _ => Avro::Union(2, Box::new(Avro::Double(-0.0))),
                    },
                    (_, false) if r.chance(10) => Avro::Union(0, Box::new(Avro::Null)),
                    ("small", false) => long(r.below(256) as i64),
                    ("big", false) => long([0, i64::MAX, 5][r.below(3) as usize]),
                    ("n", false) => long(r.below(1000) as i64 - 500),
                    (_, false) if r.chance(50) => long(r.below(1000) as i64 - 500),
                    (_, false) => Avro::Union(2, Box::new(Avro::Double(0.25))),
                }
            }
            _ => Avro::Null,
        }
    }

    fn avro_image(r: &mut Rng, image: &[AvroField], nasty: bool, id: i64) -> Avro {
        Avro::Record(
            image
                .iter()
                .map(|(name, t, nullable)| {
                    let v = if *nullable && r.chance(15) {
                        Avro::Union(0, Box::new(Avro::Null))
                    } else if *nullable {
                        Avro::Union(1, Box::new(avro_value(r, name, t, nasty, id)))
                    } else {
                        avro_value(r, name, t, nasty, id)
                    };
                    ((*name).to_owned(), v)
                })
                .collect(),
        )
    }

    fn avro_event(r: &mut Rng, version: usize, image: &[AvroField], nasty: bool, pos: u64) -> Avro {
        let id = r.below(20) as i64 - 2;
        let op = if nasty && r.chance(5) {
            r.pick(&["x", ""])
        } else {
            r.pick(&["c", "r", "u", "u", "d"])
        };
        let some = |v: Avro| Avro::Union(1, Box::new(v));
        let none = || Avro::Union(0, Box::new(Avro::Null));
        let before_image = if version == 6 {
            avro_before_v6()
        } else {
            image.to_vec()
        };
        let (before, after) = match op {
            "d" => (some(avro_image(r, &before_image, nasty, id)), none()),
            "c" | "r" => (none(), some(avro_image(r, image, nasty, id))),
            _ => (
                if r.chance(70) {
                    some(avro_image(r, &before_image, nasty, id))
                } else {
                    none()
                },
                if nasty && r.chance(5) {
                    none()
                } else {
                    some(avro_image(r, image, nasty, id))
                },
            ),
        };
        let source = if version == 5 {
            Avro::Record(vec![
                ("file".into(), some(Avro::String("bin.3".into()))),
                (
                    "pos".into(),
                    Avro::String(if nasty && r.chance(20) {
                        "+1".into()
                    } else {
                        pos.to_string()
                    }),
                ),
                ("lsn".into(), none()),
            ])
        } else {
            Avro::Record(vec![
                (
                    "file".into(),
                    Avro::String(format!("mysql-bin.00000{}", r.below(3) + 1)),
                ),
                ("pos".into(), Avro::Long(pos as i64)),
                ("row".into(), Avro::Int(r.below(3) as i32)),
            ])
        };
        Avro::Record(vec![
            ("before".into(), before),
            ("after".into(), after),
            ("source".into(), source),
            ("op".into(), Avro::String(op.into())),
            (
                "ts_ms".into(),
                if r.chance(20) {
                    none()
                } else {
                    some(Avro::Long(1_700_000_000_000 + pos as i64))
                },
            ),
        ])
    }

    /// The Avro direct decoder accepts only what the general decoder decodes, and gives the same
    /// batch: Debezium envelopes and plain records, writer schemas the table does not take, values
    /// that decline, corrupt and unknown datums, tombstones, partition moves, new tables.
    #[test]
    fn direct_avro_decoding_equals_the_general_decoder() {
        use crate::avro::{BatchSchemas, WriterSchema, encode_framed};
        let images = avro_images();
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut accepted = 0;
        for case in 0..2000 {
            let nasty = case % 2 == 1;
            let debezium = case % 5 != 4;
            let new_table = case % 10 < 2;
            // Ids 1-8 name the writer schemas; 9 is one the registry did not know.
            let mut schemas: BatchSchemas = images
                .iter()
                .enumerate()
                .map(|(v, image)| {
                    let text = avro_schema_text(v, image, debezium);
                    let ws = WriterSchema::parse(v as u32 + 1, &text).expect("schema");
                    (v as u32 + 1, Ok(Arc::new(ws)))
                })
                .collect();
            schemas.insert(9, Err("schema id 9 is not in the schema registry".into()));
            let partitioned = r.chance(50);
            let spec = DecodeSpec {
                format: crate::config::MessageFormat::Avro,
                schemas: Some(Arc::new(schemas.clone())),
                ..test_spec(!debezium, new_table, partitioned)
            };
            let n = 1 + r.below(if nasty && !new_table { 4 } else { 30 });
            let msgs: Vec<Message> = (0..n)
                .map(|i| {
                    let version = if nasty {
                        r.below(images.len() as u64) as usize
                    } else {
                        [0, 7][r.below(2) as usize]
                    };
                    let value = if nasty && r.chance(5) {
                        None
                    } else {
                        let image = &images[version];
                        let v = if debezium {
                            avro_event(&mut r, version, image, nasty, 1000 + i)
                        } else {
                            avro_image(&mut r, image, nasty, i as i64)
                        };
                        let Ok(Ok(ws)) = schemas.get(&(version as u32 + 1)).ok_or(()) else {
                            unreachable!("every version has a schema")
                        };
                        let mut bytes =
                            encode_framed(version as u32 + 1, &ws.schema, v).expect("encodes");
                        if nasty && r.chance(10) {
                            match r.below(4) {
                                0 => bytes.truncate(r.below(bytes.len() as u64) as usize),
                                1 => bytes.push(0),
                                2 => bytes[4] = 9,
                                _ => bytes[0] = 1,
                            }
                        }
                        Some(bytes)
                    };
                    Message {
                        topic: "t".into(),
                        partition: 0,
                        offset: i as i64,
                        key: None,
                        value,
                    }
                })
                .collect();
            accepted += usize::from(compare(case, &msgs, &spec, nasty, new_table));
        }
        assert!(accepted > 900, "accepted {accepted} of 2000");
    }
}
