//! The content of Hudi's Avro log blocks: data blocks (records as schemaless Avro binary, the writer
//! schema in the block header) and delete blocks (one `HoodieDeleteRecordList` datum).
//!
//! Data block content: i32 block version (3) · i32 record count · per record i32 length and the
//! record's Avro binary encoding. Delete block content: i32 version (3) · i32 length · the datum.
//! Records convert straight between Arrow columns and Avro binary, without an intermediate value tree.

use std::sync::Arc;

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanBuilder, Decimal128Builder, Float32Builder,
    Float64Builder, Int32Builder, Int64Builder, ListArray, NullArray, RecordBatch, StringArray,
    StringBuilder, StructArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Field, Fields, Float32Type, Float64Type, Int32Type,
    Int64Type, Schema, TimeUnit,
};
use lake_timeline::avro::{self as codec, Datum, Schema as AvroSchema};

use crate::schema::arrow_schema_from_avro;
use crate::{Error, Result};

/// The content version of data and delete blocks that Hudi writes and hudi-rs requires.
pub const BLOCK_VERSION: i32 = 3;

fn block_err(reason: impl Into<String>) -> Error {
    Error::Corrupt(reason.into())
}

// ---------------------------------------------------------------------------------------------
// Encoding

enum Enc<'a> {
    Null,
    Bool(&'a arrow::array::BooleanArray),
    Int(&'a arrow::array::Int32Array),
    Long(&'a arrow::array::Int64Array),
    Float(&'a arrow::array::Float32Array),
    Double(&'a arrow::array::Float64Array),
    Str(&'a arrow::array::StringArray),
    Bytes(&'a arrow::array::BinaryArray),
    Decimal(&'a arrow::array::Decimal128Array, usize),
    List(&'a ListArray, Box<Slot<'a>>),
    Struct(Vec<Slot<'a>>),
}

/// A value position: its encoder and whether the Avro type is `["null", T]`.
struct Slot<'a> {
    enc: Enc<'a>,
    nullable: bool,
    array: &'a dyn Array,
}

/// Canonical column types the encoder works on (narrow ints widen to `int`, views to plain arrays).
fn canonical(array: &ArrayRef) -> Result<ArrayRef> {
    let to = match array.data_type() {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16 => DataType::Int32,
        DataType::UInt32 => DataType::Int64,
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        DataType::LargeList(f) => DataType::List(f.clone()),
        // Dates are ints and timestamps longs on the wire (millis or micros, as the schema says).
        DataType::Date32 => DataType::Int32,
        DataType::Timestamp(TimeUnit::Second, _) => {
            let millis = cast(array, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
            return Ok(cast(&millis, &DataType::Int64)?);
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            let micros = cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
            return Ok(cast(&micros, &DataType::Int64)?);
        }
        DataType::Timestamp(_, _) => DataType::Int64,
        // Nested values are made canonical the same way.
        DataType::Struct(_) => {
            let s = array.as_struct();
            let columns = s
                .columns()
                .iter()
                .map(canonical)
                .collect::<Result<Vec<_>>>()?;
            let fields: Fields = s
                .fields()
                .iter()
                .zip(&columns)
                .map(|(f, c)| Arc::new(f.as_ref().clone().with_data_type(c.data_type().clone())))
                .collect();
            return Ok(Arc::new(StructArray::try_new(
                fields,
                columns,
                s.nulls().cloned(),
            )?));
        }
        DataType::List(item) => {
            let list = array.as_list::<i32>();
            let values = canonical(list.values())?;
            let item = Arc::new(
                item.as_ref()
                    .clone()
                    .with_data_type(values.data_type().clone()),
            );
            return Ok(Arc::new(ListArray::try_new(
                item,
                list.offsets().clone(),
                values,
                list.nulls().cloned(),
            )?));
        }
        _ => return Ok(array.clone()),
    };
    Ok(cast(array, &to)?)
}

fn slot<'a>(array: &'a ArrayRef, nullable: bool, name: &str) -> Result<Slot<'a>> {
    let enc = match array.data_type() {
        DataType::Null => Enc::Null,
        DataType::Boolean => Enc::Bool(array.as_boolean()),
        DataType::Int32 => Enc::Int(array.as_primitive::<Int32Type>()),
        DataType::Int64 => Enc::Long(array.as_primitive::<Int64Type>()),
        DataType::Float32 => Enc::Float(array.as_primitive::<Float32Type>()),
        DataType::Float64 => Enc::Double(array.as_primitive::<Float64Type>()),
        DataType::Utf8 => Enc::Str(array.as_string::<i32>()),
        DataType::Binary => Enc::Bytes(array.as_binary::<i32>()),
        DataType::Decimal128(p, _) => Enc::Decimal(
            array.as_primitive::<Decimal128Type>(),
            crate::schema::decimal_fixed_size(*p),
        ),
        DataType::List(item) => {
            let list = array.as_list::<i32>();
            let values: &'a ArrayRef = list.values();
            Enc::List(list, Box::new(slot(values, item.is_nullable(), name)?))
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let children = s
                .columns()
                .iter()
                .zip(fields.iter())
                .map(|(c, f)| slot(c, f.is_nullable(), f.name()))
                .collect::<Result<Vec<_>>>()?;
            Enc::Struct(children)
        }
        other => {
            return Err(Error::Schema {
                reason: format!("column {name}: type {other} cannot be written to an Avro block"),
            });
        }
    };
    Ok(Slot {
        enc,
        nullable,
        array: array.as_ref(),
    })
}

impl Slot<'_> {
    fn encode(&self, row: usize, out: &mut Vec<u8>) {
        if self.nullable {
            if self.array.is_null(row) {
                out.push(0); // union branch 0: null
                return;
            }
            out.push(2); // zig-zag 1: the value branch
        }
        match &self.enc {
            Enc::Null => {}
            Enc::Bool(a) => out.push(u8::from(a.value(row))),
            Enc::Int(a) => codec::write_long(out, i64::from(a.value(row))),
            Enc::Long(a) => codec::write_long(out, a.value(row)),
            Enc::Float(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            Enc::Double(a) => out.extend_from_slice(&a.value(row).to_le_bytes()),
            Enc::Str(a) => codec::write_bytes(out, a.value(row).as_bytes()),
            Enc::Bytes(a) => codec::write_bytes(out, a.value(row)),
            Enc::Decimal(a, size) => {
                let be = a.value(row).to_be_bytes();
                out.extend_from_slice(&be[16 - size..]);
            }
            Enc::List(list, item) => {
                let offsets = list.value_offsets();
                let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
                if end > start {
                    codec::write_long(out, (end - start) as i64);
                    for i in start..end {
                        item.encode(i, out);
                    }
                }
                codec::write_long(out, 0);
            }
            Enc::Struct(children) => children.iter().for_each(|c| c.encode(row, out)),
        }
    }
}

/// Encodes the rows of `batch` as the content of an Avro data block. The batch's schema must be
/// the one whose Avro form goes into the block's `SCHEMA` header (see
/// [`crate::schema::avro_schema_json`]).
pub fn encode_data_block(batch: &RecordBatch) -> Result<Vec<u8>> {
    let columns = batch
        .columns()
        .iter()
        .map(canonical)
        .collect::<Result<Vec<_>>>()?;
    let slots = columns
        .iter()
        .zip(batch.schema().fields())
        .map(|(c, f)| slot(c, f.is_nullable(), f.name()))
        .collect::<Result<Vec<_>>>()?;
    let n = batch.num_rows();
    let mut out = Vec::with_capacity(8 + n * 64);
    out.extend_from_slice(&BLOCK_VERSION.to_be_bytes());
    out.extend_from_slice(&(n as i32).to_be_bytes());
    let mut rec = Vec::with_capacity(256);
    for row in 0..n {
        rec.clear();
        for s in &slots {
            s.encode(row, &mut rec);
        }
        out.extend_from_slice(&(rec.len() as i32).to_be_bytes());
        out.extend_from_slice(&rec);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// Variable-width values of one column: bytes laid end to end, Arrow offsets and validity.
/// Strings are checked for UTF-8 once per column when the array is built, not per value.
struct ByteCol {
    values: Vec<u8>,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

impl ByteCol {
    fn new(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        ByteCol {
            values: Vec::with_capacity(rows * 8),
            offsets,
            nulls: NullBufferBuilder::new(rows),
        }
    }

    fn push(&mut self, v: &[u8]) -> Result<()> {
        self.values.extend_from_slice(v);
        let end = i32::try_from(self.values.len())
            .map_err(|_| block_err("Avro column over 2 GiB in one block"))?;
        self.offsets.push(end);
        self.nulls.append_non_null();
        Ok(())
    }

    fn push_null(&mut self) {
        let last = self.offsets.last().copied().unwrap_or(0);
        self.offsets.push(last);
        self.nulls.append_null();
    }

    fn finish_utf8(mut self) -> Result<ArrayRef> {
        let nulls = self.nulls.finish();
        Ok(Arc::new(
            StringArray::try_new(
                OffsetBuffer::new(self.offsets.into()),
                self.values.into(),
                nulls,
            )
            .map_err(|_| block_err("Avro string is not UTF-8"))?,
        ))
    }

    fn finish_binary(mut self) -> Result<ArrayRef> {
        let nulls = self.nulls.finish();
        Ok(Arc::new(BinaryArray::try_new(
            OffsetBuffer::new(self.offsets.into()),
            self.values.into(),
            nulls,
        )?))
    }
}

enum Dec {
    Null(usize),
    Bool(BooleanBuilder),
    Int(Int32Builder),
    Long(Int64Builder),
    Float(Float32Builder),
    Double(Float64Builder),
    Str(ByteCol),
    Bytes(ByteCol),
    Fixed(usize, ByteCol),
    Enum(Vec<String>, StringBuilder),
    Decimal {
        fixed: Option<usize>,
        builder: Decimal128Builder,
    },
    List {
        offsets: Vec<i32>,
        validity: Vec<bool>,
        item: Box<Dec>,
    },
    Struct {
        validity: Vec<bool>,
        children: Vec<Dec>,
    },
    /// A union of `null` and one type (either order, or either alone): the branch index is read
    /// and must be `null_branch` (a null) or `value_branch` (a `T`).
    Nullable {
        null_branch: Option<i64>,
        value_branch: i64,
        inner: Box<Dec>,
    },
}

/// The decoder of one value position; `rows` sizes its buffers (the block's record count at the
/// top level, 0 inside lists, whose item count is unknown).
fn dec_for(avro: &AvroSchema, arrow: &DataType, rows: usize) -> Result<Dec> {
    Ok(match avro {
        AvroSchema::Union(branches) => {
            let null_branch = branches.iter().position(|b| *b == AvroSchema::Null);
            let others: Vec<&AvroSchema> = branches
                .iter()
                .filter(|b| **b != AvroSchema::Null)
                .collect();
            match (null_branch, others.as_slice()) {
                (_, [AvroSchema::Union(_)]) => {
                    return Err(block_err("an Avro union directly inside a union"));
                }
                (n, [one]) => Dec::Nullable {
                    null_branch: n.map(|n| n as i64),
                    value_branch: branches.iter().position(|b| b == *one).unwrap_or(0) as i64,
                    inner: Box::new(dec_for(one, arrow, rows)?),
                },
                (Some(n), []) => Dec::Nullable {
                    null_branch: Some(n as i64),
                    value_branch: -1,
                    inner: Box::new(Dec::Null(0)),
                },
                _ => return Err(block_err("Avro unions of several types are not supported")),
            }
        }
        AvroSchema::Null => Dec::Null(0),
        AvroSchema::Boolean => Dec::Bool(BooleanBuilder::with_capacity(rows)),
        AvroSchema::Int => Dec::Int(Int32Builder::with_capacity(rows)),
        AvroSchema::Long => Dec::Long(Int64Builder::with_capacity(rows)),
        AvroSchema::Float => Dec::Float(Float32Builder::with_capacity(rows)),
        AvroSchema::Double => Dec::Double(Float64Builder::with_capacity(rows)),
        AvroSchema::String => Dec::Str(ByteCol::new(rows)),
        AvroSchema::Bytes | AvroSchema::Fixed(_) => {
            let fixed = match avro {
                AvroSchema::Fixed(n) => Some(*n),
                _ => None,
            };
            match arrow {
                DataType::Decimal128(p, s) => Dec::Decimal {
                    fixed,
                    builder: Decimal128Builder::with_capacity(rows)
                        .with_precision_and_scale(*p, *s)?,
                },
                _ => match fixed {
                    Some(n) => Dec::Fixed(n, ByteCol::new(rows)),
                    None => Dec::Bytes(ByteCol::new(rows)),
                },
            }
        }
        AvroSchema::Enum(symbols) => Dec::Enum(symbols.clone(), StringBuilder::new()),
        AvroSchema::Array(items) => {
            let item_type = match arrow {
                DataType::List(f) => f.data_type().clone(),
                _ => return Err(block_err("Avro array without an Arrow list type")),
            };
            Dec::List {
                offsets: vec![0],
                validity: Vec::new(),
                item: Box::new(dec_for(items, &item_type, 0)?),
            }
        }
        AvroSchema::Record { fields, .. } => {
            let arrow_fields = match arrow {
                DataType::Struct(f) => f.clone(),
                _ => return Err(block_err("Avro record without an Arrow struct type")),
            };
            Dec::Struct {
                validity: Vec::new(),
                children: fields
                    .iter()
                    .zip(arrow_fields.iter())
                    .map(|((_, s), f)| dec_for(s, f.data_type(), rows))
                    .collect::<Result<_>>()?,
            }
        }
        AvroSchema::Map(_) => return Err(block_err("Avro maps in log blocks are not supported")),
    })
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if buf.len() < n {
        return Err(block_err("truncated Avro record"));
    }
    let (a, b) = buf.split_at(n);
    *buf = b;
    Ok(a)
}

/// A big-endian i32 of the block framing.
fn read_i32(buf: &mut &[u8]) -> Result<i32> {
    let mut b = [0u8; 4];
    b.copy_from_slice(take(buf, 4)?);
    Ok(i32::from_be_bytes(b))
}

/// Reads the content version that starts data and delete blocks; only [`BLOCK_VERSION`] is read.
fn check_version(buf: &mut &[u8], what: &str) -> Result<()> {
    let version = read_i32(buf)?;
    if version != BLOCK_VERSION {
        return Err(block_err(format!(
            "{what} version {version} (only {BLOCK_VERSION} is read)"
        )));
    }
    Ok(())
}

/// An Avro `long` (zig-zag varint), with a fast path for the one-byte values most lengths,
/// union branches and small numbers are.
#[inline]
fn read_long(buf: &mut &[u8]) -> Result<i64> {
    if let Some((&b, rest)) = buf.split_first()
        && b < 0x80
    {
        *buf = rest;
        return Ok(i64::from(b >> 1) ^ -i64::from(b & 1));
    }
    codec::read_long(buf).map_err(block_err)
}

fn read_len(buf: &mut &[u8]) -> Result<usize> {
    usize::try_from(read_long(buf)?).map_err(|_| block_err("negative Avro length"))
}

fn decimal_from_be(b: &[u8]) -> Result<i128> {
    if b.len() > 16 {
        return Err(block_err("Avro decimal wider than 16 bytes"));
    }
    let fill = if b.first().is_some_and(|x| x & 0x80 != 0) {
        0xff
    } else {
        0
    };
    let mut full = [fill; 16];
    full[16 - b.len()..].copy_from_slice(b);
    Ok(i128::from_be_bytes(full))
}

impl Dec {
    /// Reads one value; a `["null", T]` union's branch is read here and `T` decoded in the same
    /// call (no nested call per nullable value, which most columns are).
    fn read(&mut self, buf: &mut &[u8]) -> Result<()> {
        let dec = match self {
            Dec::Nullable {
                null_branch,
                value_branch,
                inner,
            } => {
                let branch = read_long(buf)?;
                if Some(branch) == *null_branch {
                    inner.push_null();
                    return Ok(());
                }
                if branch != *value_branch {
                    return Err(block_err(format!(
                        "Avro union branch {branch} out of range"
                    )));
                }
                inner.as_mut()
            }
            other => other,
        };
        match dec {
            Dec::Null(n) => *n += 1,
            Dec::Bool(b) => b.append_value(take(buf, 1)?[0] != 0),
            Dec::Int(b) => b.append_value(
                i32::try_from(read_long(buf)?).map_err(|_| block_err("Avro int out of range"))?,
            ),
            Dec::Long(b) => b.append_value(read_long(buf)?),
            Dec::Float(b) => {
                let v = take(buf, 4)?;
                b.append_value(f32::from_le_bytes([v[0], v[1], v[2], v[3]]))
            }
            Dec::Double(b) => {
                let v = take(buf, 8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(v);
                b.append_value(f64::from_le_bytes(a))
            }
            Dec::Str(c) | Dec::Bytes(c) => {
                let n = read_len(buf)?;
                c.push(take(buf, n)?)?
            }
            Dec::Fixed(n, c) => c.push(take(buf, *n)?)?,
            Dec::Enum(symbols, b) => {
                let i = read_len(buf)?;
                b.append_value(
                    symbols
                        .get(i)
                        .ok_or_else(|| block_err("Avro enum index out of range"))?,
                )
            }
            Dec::Decimal { fixed, builder } => {
                let n = match fixed {
                    Some(n) => *n,
                    None => read_len(buf)?,
                };
                builder.append_value(decimal_from_be(take(buf, n)?)?)
            }
            Dec::List {
                offsets,
                validity,
                item,
            } => {
                let count = each_item(buf, |b| item.read(b))?;
                let last = offsets.last().copied().unwrap_or(0);
                let next = i32::try_from(count)
                    .ok()
                    .and_then(|c| last.checked_add(c))
                    .ok_or_else(|| block_err("Avro array too long"))?;
                offsets.push(next);
                validity.push(true);
            }
            Dec::Struct { validity, children } => {
                for c in children.iter_mut() {
                    c.read(buf)?;
                }
                validity.push(true);
            }
            // Unwrapped above; a union directly inside a union is refused when planning.
            Dec::Nullable { inner, .. } => inner.read(buf)?,
        }
        Ok(())
    }

    fn push_null(&mut self) {
        match self {
            Dec::Null(n) => *n += 1,
            Dec::Bool(b) => b.append_null(),
            Dec::Int(b) => b.append_null(),
            Dec::Long(b) => b.append_null(),
            Dec::Float(b) => b.append_null(),
            Dec::Double(b) => b.append_null(),
            Dec::Enum(_, b) => b.append_null(),
            Dec::Str(c) | Dec::Bytes(c) | Dec::Fixed(_, c) => c.push_null(),
            Dec::Decimal { builder, .. } => builder.append_null(),
            Dec::List {
                offsets, validity, ..
            } => {
                let last = offsets.last().copied().unwrap_or(0);
                offsets.push(last);
                validity.push(false);
            }
            Dec::Struct { validity, children } => {
                children.iter_mut().for_each(Dec::push_null);
                validity.push(false);
            }
            Dec::Nullable { inner, .. } => inner.push_null(),
        }
    }

    fn finish(self, target: &DataType) -> Result<ArrayRef> {
        let raw: ArrayRef = match self {
            Dec::Null(n) => Arc::new(NullArray::new(n)),
            Dec::Bool(mut b) => Arc::new(b.finish()),
            Dec::Int(mut b) => Arc::new(b.finish()),
            Dec::Long(mut b) => Arc::new(b.finish()),
            Dec::Float(mut b) => Arc::new(b.finish()),
            Dec::Double(mut b) => Arc::new(b.finish()),
            Dec::Enum(_, mut b) => Arc::new(b.finish()),
            Dec::Str(c) => c.finish_utf8()?,
            Dec::Bytes(c) | Dec::Fixed(_, c) => c.finish_binary()?,
            Dec::Decimal { mut builder, .. } => Arc::new(builder.finish()),
            Dec::List {
                offsets,
                validity,
                item,
            } => {
                let DataType::List(field) = target else {
                    return Err(block_err("list decoded for a non-list column"));
                };
                let values = item.finish(field.data_type())?;
                let field = Arc::new(field.as_ref().clone().with_nullable(true));
                Arc::new(ListArray::try_new(
                    field,
                    OffsetBuffer::new(offsets.into()),
                    values,
                    Some(NullBuffer::from(validity)),
                )?)
            }
            Dec::Struct { validity, children } => {
                let DataType::Struct(fields) = target else {
                    return Err(block_err("record decoded for a non-struct column"));
                };
                let arrays = children
                    .into_iter()
                    .zip(fields.iter())
                    .map(|(c, f)| c.finish(f.data_type()))
                    .collect::<Result<Vec<_>>>()?;
                let fields: Fields = fields
                    .iter()
                    .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
                    .collect();
                Arc::new(StructArray::try_new(
                    fields,
                    arrays,
                    Some(NullBuffer::from(validity)),
                )?)
            }
            Dec::Nullable { inner, .. } => return inner.finish(target),
        };
        if raw.data_type() == target {
            Ok(raw)
        } else {
            Ok(cast(&raw, target)?)
        }
    }
}

/// Decodes the content of an Avro data block written with `schema_json` into one record batch.
pub fn decode_data_block(schema_json: &str, content: &[u8]) -> Result<RecordBatch> {
    decode_data_block_columns(schema_json, content, None)
}

/// Decodes the named top-level `columns` of a data block (all with `None`), in the block schema's
/// order; names the block does not have are left out. Fields before the last wanted one are
/// skipped over without being built; fields after it are not looked at (records are
/// length-prefixed).
pub fn decode_data_block_columns(
    schema_json: &str,
    content: &[u8],
    columns: Option<&[&str]>,
) -> Result<RecordBatch> {
    let avro = AvroSchema::parse(schema_json).map_err(block_err)?;
    let AvroSchema::Record { fields, .. } = &avro else {
        return Err(block_err("the block schema is not a record"));
    };
    let arrow = arrow_schema_from_avro(schema_json)?;
    let wanted: Vec<bool> = fields
        .iter()
        .map(|(name, _)| columns.is_none_or(|c| c.contains(&name.as_str())))
        .collect();
    let used = wanted.iter().rposition(|w| *w).map_or(0, |i| i + 1);
    let mut buf = content;
    check_version(&mut buf, "Avro data block")?;
    let count = read_i32(&mut buf)?;
    // Buffers are sized for the records the block can hold: each takes its 4-byte length and
    // about a byte per decoded value, so a corrupt count (or a header schema of thousands of
    // fields) cannot reserve more than a few times the block's size; columns grow past the hint.
    let values: usize = fields[..used]
        .iter()
        .zip(&wanted)
        .filter(|(_, w)| **w)
        .map(|((_, s), _)| leaves(s))
        .sum();
    let rows = usize::try_from(count)
        .unwrap_or(0)
        .min(buf.len() / (4 + values));
    let mut decs = fields[..used]
        .iter()
        .zip(arrow.fields())
        .zip(&wanted)
        .map(|(((_, s), f), w)| match w {
            true => dec_for(s, f.data_type(), rows).map(FieldOp::Decode),
            false => Ok(FieldOp::Skip(Skip::of(s))),
        })
        .collect::<Result<Vec<_>>>()?;
    for i in 0..count.max(0) {
        let len = read_i32(&mut buf)?;
        let mut rec = take(&mut buf, usize::try_from(len).unwrap_or(0))?;
        ITEM_BUDGET.set(rec.len() as i64 + 1);
        for d in decs.iter_mut() {
            match d {
                FieldOp::Decode(d) => d.read(&mut rec),
                FieldOp::Skip(s) => s.run(&mut rec),
            }
            .map_err(|e| block_err(format!("record {i}: {e}")))?;
        }
    }
    let mut out_fields = Vec::new();
    let mut out_columns = Vec::new();
    for (d, f) in decs.into_iter().zip(arrow.fields()) {
        let FieldOp::Decode(d) = d else { continue };
        let c = d.finish(f.data_type())?;
        let f: &Field = f;
        out_fields.push(
            f.clone()
                .with_nullable(f.is_nullable() || c.null_count() > 0),
        );
        out_columns.push(c);
    }
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(out_fields)),
        out_columns,
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(count.max(0) as usize)),
    )?)
}

/// A top-level field of a data block: decoded into a column, or skipped over.
enum FieldOp {
    Decode(Dec),
    Skip(Skip),
}

/// How to move past a value without building it; the common shapes (scalars, strings and their
/// `["null", T]` unions) without walking the schema.
enum Skip {
    /// A value of this many bytes (boolean, float, double, fixed).
    Bytes(usize),
    /// A varint (int, long, enum index).
    Varint,
    /// A length-prefixed value (string, bytes).
    Sized,
    /// `["null", T]`: the branch, then `T` unless the branch is `null`.
    Nullable(i64, Box<Skip>),
    /// Anything else, by its schema.
    Schema(AvroSchema),
}

impl Skip {
    fn of(schema: &AvroSchema) -> Skip {
        match schema {
            AvroSchema::Null => Skip::Bytes(0),
            AvroSchema::Boolean => Skip::Bytes(1),
            AvroSchema::Float => Skip::Bytes(4),
            AvroSchema::Double => Skip::Bytes(8),
            AvroSchema::Fixed(n) => Skip::Bytes(*n),
            AvroSchema::Int | AvroSchema::Long | AvroSchema::Enum(_) => Skip::Varint,
            AvroSchema::String | AvroSchema::Bytes => Skip::Sized,
            // `["null", T]` (either order): the branch, then `T` unless null.
            AvroSchema::Union(b)
                if b.len() == 2
                    && b.contains(&AvroSchema::Null)
                    && !b.iter().any(|s| matches!(s, AvroSchema::Union(_))) =>
            {
                let null = b.iter().position(|s| *s == AvroSchema::Null).unwrap_or(0);
                Skip::Nullable(null as i64, Box::new(Skip::of(&b[1 - null])))
            }
            other => Skip::Schema(other.clone()),
        }
    }

    fn run(&self, buf: &mut &[u8]) -> Result<()> {
        match self {
            Skip::Bytes(n) => {
                take(buf, *n)?;
            }
            Skip::Varint => {
                read_long(buf)?;
            }
            Skip::Sized => {
                let n = read_len(buf)?;
                take(buf, n)?;
            }
            Skip::Nullable(null, inner) => {
                let branch = read_long(buf)?;
                if branch != *null {
                    if branch != 1 - *null {
                        return Err(block_err("Avro union branch out of range"));
                    }
                    inner.run(buf)?;
                }
            }
            Skip::Schema(s) => skip(s, buf)?,
        }
        Ok(())
    }
}

/// The columns a value of `schema` fills at the top level of a record: one per leaf of its
/// records (an array's items are sized separately).
fn leaves(schema: &AvroSchema) -> usize {
    match schema {
        AvroSchema::Record { fields, .. } => fields.iter().map(|(_, f)| leaves(f)).sum::<usize>(),
        AvroSchema::Union(b) => b.iter().map(leaves).max().unwrap_or(0),
        _ => 1,
    }
}

/// Moves past one value of `schema` without building it.
fn skip(schema: &AvroSchema, buf: &mut &[u8]) -> Result<()> {
    match schema {
        AvroSchema::Null => {}
        AvroSchema::Boolean => {
            take(buf, 1)?;
        }
        AvroSchema::Int | AvroSchema::Long | AvroSchema::Enum(_) => {
            read_long(buf)?;
        }
        AvroSchema::Float => {
            take(buf, 4)?;
        }
        AvroSchema::Double => {
            take(buf, 8)?;
        }
        AvroSchema::String | AvroSchema::Bytes => {
            let n = read_len(buf)?;
            take(buf, n)?;
        }
        AvroSchema::Fixed(n) => {
            take(buf, *n)?;
        }
        AvroSchema::Array(items) => {
            each_item(buf, |b| skip(items, b))?;
        }
        AvroSchema::Map(values) => {
            each_item(buf, |b| {
                let n = read_len(b)?;
                take(b, n)?;
                skip(values, b)
            })?;
        }
        AvroSchema::Record { fields, .. } => {
            for (_, f) in fields {
                skip(f, buf)?;
            }
        }
        AvroSchema::Union(branches) => {
            let i = read_len(buf)?;
            let branch = branches
                .get(i)
                .ok_or_else(|| block_err("Avro union branch out of range"))?;
            skip(branch, buf)?;
        }
    }
    Ok(())
}

/// Walks the blocks of an array or map, each item by `item` (a block's byte size is read but not
/// trusted), out of the record's item budget; returns the number of items.
fn each_item(buf: &mut &[u8], mut item: impl FnMut(&mut &[u8]) -> Result<()>) -> Result<i64> {
    let mut count = 0i64;
    loop {
        let mut n = read_long(buf)?;
        if n == 0 {
            return Ok(count);
        }
        if n < 0 {
            n = n
                .checked_neg()
                .ok_or_else(|| block_err("bad Avro array block count"))?;
            read_long(buf)?;
        }
        spend_items(n)?;
        for _ in 0..n {
            item(buf)?;
        }
        count += n;
    }
}

thread_local! {
    /// Array and map items the record being decoded may still hold: its length in bytes plus one.
    /// Items take a byte or more each, except zero-width ones (`null`, empty records), which could
    /// otherwise make a few bytes of nested arrays cost billions of steps.
    static ITEM_BUDGET: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// Takes `n` items from the record's budget.
fn spend_items(n: i64) -> Result<()> {
    let left = ITEM_BUDGET.get();
    if n > left {
        return Err(block_err(format!(
            "Avro arrays of more items than the record's {left} remaining bytes allow"
        )));
    }
    ITEM_BUDGET.set(left - n);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Delete blocks

/// The ordering value a delete carries.
#[derive(Clone, Debug, PartialEq)]
pub enum OrderingValue {
    /// No ordering value (or `IntWrapper(0)`): the delete wins by commit time.
    CommitTime,
    /// A boolean.
    Boolean(bool),
    /// An int.
    Int(i32),
    /// A long (also timestamp-micros and time-micros wrappers).
    Long(i64),
    /// A float.
    Float(f32),
    /// A double.
    Double(f64),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A string.
    String(String),
    /// A date (days since the epoch).
    Date(i32),
    /// A decimal(30, 15) as its unscaled value.
    Decimal(i128),
}

impl OrderingValue {
    /// The value as a one-element Arrow array (`None` for commit-time ordering).
    pub fn to_array(&self) -> Option<ArrayRef> {
        use arrow::array as a;
        Some(match self {
            OrderingValue::CommitTime => return None,
            OrderingValue::Boolean(v) => Arc::new(a::BooleanArray::from(vec![*v])),
            OrderingValue::Int(v) => Arc::new(a::Int32Array::from(vec![*v])),
            OrderingValue::Long(v) => Arc::new(a::Int64Array::from(vec![*v])),
            OrderingValue::Float(v) => Arc::new(a::Float32Array::from(vec![*v])),
            OrderingValue::Double(v) => Arc::new(a::Float64Array::from(vec![*v])),
            OrderingValue::Bytes(v) => Arc::new(a::BinaryArray::from(vec![v.as_slice()])),
            OrderingValue::String(v) => Arc::new(a::StringArray::from(vec![v.as_str()])),
            OrderingValue::Date(v) => Arc::new(a::Date32Array::from(vec![*v])),
            OrderingValue::Decimal(v) => Arc::new(
                a::Decimal128Array::from(vec![*v])
                    .with_precision_and_scale(30, 15)
                    .ok()?,
            ),
        })
    }

    /// The ordering value of row `row` of an ordering column.
    pub fn of(col: &dyn Array, row: usize) -> OrderingValue {
        if col.is_null(row) {
            return OrderingValue::CommitTime;
        }
        match col.data_type() {
            DataType::Boolean => OrderingValue::Boolean(col.as_boolean().value(row)),
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::UInt8
            | DataType::UInt16 => match cast(&col.slice(row, 1), &DataType::Int32) {
                Ok(a) => OrderingValue::Int(a.as_primitive::<Int32Type>().value(0)),
                Err(_) => OrderingValue::CommitTime,
            },
            DataType::Int64 | DataType::UInt32 | DataType::Timestamp(_, _) => {
                match cast(&col.slice(row, 1), &DataType::Int64) {
                    Ok(a) => OrderingValue::Long(a.as_primitive::<Int64Type>().value(0)),
                    Err(_) => OrderingValue::CommitTime,
                }
            }
            DataType::Float32 => OrderingValue::Float(col.as_primitive::<Float32Type>().value(row)),
            DataType::Float64 => {
                OrderingValue::Double(col.as_primitive::<Float64Type>().value(row))
            }
            DataType::Date32 => OrderingValue::Date(col.as_primitive::<Date32Type>().value(row)),
            DataType::Binary => OrderingValue::Bytes(col.as_binary::<i32>().value(row).to_vec()),
            DataType::Decimal128(_, _) => {
                match cast(&col.slice(row, 1), &DataType::Decimal128(30, 15)) {
                    Ok(a) => OrderingValue::Decimal(a.as_primitive::<Decimal128Type>().value(0)),
                    Err(_) => OrderingValue::CommitTime,
                }
            }
            _ => match cast(&col.slice(row, 1), &DataType::Utf8) {
                Ok(a) => OrderingValue::String(a.as_string::<i32>().value(0).to_owned()),
                Err(_) => OrderingValue::CommitTime,
            },
        }
    }

    fn to_datum(&self) -> Datum {
        let wrap = |branch: u32, v: Datum| Datum::Union(branch, Box::new(Datum::Record(vec![v])));
        match self {
            OrderingValue::CommitTime => Datum::Union(0, Box::new(Datum::Null)),
            OrderingValue::Boolean(v) => wrap(1, Datum::Boolean(*v)),
            OrderingValue::Int(v) => wrap(2, Datum::Int(*v)),
            OrderingValue::Long(v) => wrap(3, Datum::Long(*v)),
            OrderingValue::Float(v) => wrap(4, Datum::Float(*v)),
            OrderingValue::Double(v) => wrap(5, Datum::Double(*v)),
            OrderingValue::Bytes(v) => wrap(6, Datum::Bytes(v.clone())),
            OrderingValue::String(v) => wrap(7, Datum::String(v.clone())),
            OrderingValue::Date(v) => wrap(8, Datum::Int(*v)),
            OrderingValue::Decimal(v) => wrap(9, Datum::Bytes(minimal_be(*v))),
        }
    }

    fn from_datum(d: &Datum) -> Result<OrderingValue> {
        let Datum::Union(branch, inner) = d else {
            return Err(block_err("delete ordering value is not a union"));
        };
        let value = match inner.as_ref() {
            Datum::Null => return Ok(OrderingValue::CommitTime),
            Datum::Record(f) => f.first().cloned().unwrap_or(Datum::Null),
            other => other.clone(),
        };
        Ok(match (branch, value) {
            (2, Datum::Int(0)) => OrderingValue::CommitTime,
            (1, Datum::Boolean(v)) => OrderingValue::Boolean(v),
            (2, Datum::Int(v)) => OrderingValue::Int(v),
            (3 | 10 | 11, Datum::Long(v)) => OrderingValue::Long(v),
            (4, Datum::Float(v)) => OrderingValue::Float(v),
            (5, Datum::Double(v)) => OrderingValue::Double(v),
            (6, Datum::Bytes(b)) => OrderingValue::Bytes(b),
            (7, Datum::String(s)) => OrderingValue::String(s),
            (8, Datum::Int(v)) => OrderingValue::Date(v),
            (9, Datum::Bytes(b)) => OrderingValue::Decimal(decimal_from_be(&b)?),
            (b, v) => {
                return Err(block_err(format!(
                    "delete ordering value branch {b} holds {v:?}"
                )));
            }
        })
    }
}

fn minimal_be(v: i128) -> Vec<u8> {
    let be = v.to_be_bytes();
    let mut start = 0;
    while start < 15 {
        let (b, next) = (be[start], be[start + 1]);
        if (b == 0 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
            start += 1;
        } else {
            break;
        }
    }
    be[start..].to_vec()
}

/// One deleted record of a delete block.
#[derive(Clone, Debug, PartialEq)]
pub struct DeletedRecord {
    /// The record key.
    pub key: String,
    /// The partition path.
    pub partition: String,
    /// The delete's ordering value.
    pub ordering: OrderingValue,
}

/// Hudi's `HoodieDeleteRecordList` schema (with the 13th `ArrayWrapper` branch newer Hudi reads).
pub const DELETE_RECORD_LIST_SCHEMA: &str = r#"{"type":"record","name":"HoodieDeleteRecordList","namespace":"org.apache.hudi.avro.model","fields":[{"name":"deleteRecordList","type":{"type":"array","items":{"type":"record","name":"HoodieDeleteRecord","fields":[{"name":"recordKey","type":["null",{"type":"string","avro.java.string":"String"}],"default":null},{"name":"partitionPath","type":["null",{"type":"string","avro.java.string":"String"}],"default":null},{"name":"orderingVal","type":["null",{"type":"record","name":"BooleanWrapper","fields":[{"name":"value","type":"boolean"}]},{"type":"record","name":"IntWrapper","fields":[{"name":"value","type":"int"}]},{"type":"record","name":"LongWrapper","fields":[{"name":"value","type":"long"}]},{"type":"record","name":"FloatWrapper","fields":[{"name":"value","type":"float"}]},{"type":"record","name":"DoubleWrapper","fields":[{"name":"value","type":"double"}]},{"type":"record","name":"BytesWrapper","fields":[{"name":"value","type":"bytes"}]},{"type":"record","name":"StringWrapper","fields":[{"name":"value","type":{"type":"string","avro.java.string":"String"}}]},{"type":"record","name":"DateWrapper","fields":[{"name":"value","type":{"type":"int","logicalType":"date"}}]},{"type":"record","name":"DecimalWrapper","fields":[{"name":"value","type":{"type":"bytes","logicalType":"decimal","precision":30,"scale":15}}]},{"type":"record","name":"TimeMicrosWrapper","fields":[{"name":"value","type":{"type":"long","logicalType":"time-micros"}}]},{"type":"record","name":"TimestampMicrosWrapper","fields":[{"name":"value","type":{"type":"long","logicalType":"timestamp-micros"}}]}],"default":null}]}}}]}"#;

/// Encodes deleted records as the content of a delete block.
pub fn encode_delete_block(records: &[DeletedRecord]) -> Vec<u8> {
    let opt = |s: &str| Datum::Union(1, Box::new(Datum::String(s.to_owned())));
    let datum = Datum::Record(vec![Datum::Array(
        records
            .iter()
            .map(|r| Datum::Record(vec![opt(&r.key), opt(&r.partition), r.ordering.to_datum()]))
            .collect(),
    )]);
    let mut body = Vec::new();
    datum.encode(&mut body);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&BLOCK_VERSION.to_be_bytes());
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes the content of a delete block.
pub fn decode_delete_block(content: &[u8]) -> Result<Vec<DeletedRecord>> {
    let mut buf = content;
    check_version(&mut buf, "delete block")?;
    let len = read_i32(&mut buf)?;
    let mut body = take(&mut buf, usize::try_from(len).unwrap_or(0))?;
    let schema = AvroSchema::parse(DELETE_RECORD_LIST_SCHEMA).map_err(block_err)?;
    let datum = codec::decode(&schema, &mut body).map_err(block_err)?;
    let items = match datum {
        Datum::Record(mut f) if !f.is_empty() => match f.swap_remove(0) {
            Datum::Array(items) => items,
            _ => return Err(block_err("delete list is not an array")),
        },
        _ => return Err(block_err("delete list is not a record")),
    };
    let opt_str = |d: &Datum| match d {
        Datum::Union(_, v) => match v.as_ref() {
            Datum::String(s) => s.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    items
        .iter()
        .map(|item| {
            let Datum::Record(f) = item else {
                return Err(block_err("deleted record is not a record"));
            };
            if f.len() < 3 {
                return Err(block_err("deleted record has too few fields"));
            }
            Ok(DeletedRecord {
                key: opt_str(&f[0]),
                partition: opt_str(&f[1]),
                ordering: OrderingValue::from_datum(&f[2])?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use arrow::array::{
        Date32Array, Decimal128Array, Float64Array, Int32Array, Int64Array, StringArray,
        TimestampMicrosecondArray,
    };

    use super::*;
    use crate::schema::avro_schema_json;

    #[test]
    fn data_block_round_trips_lake_types() {
        let item = Arc::new(Field::new("item", DataType::Int64, true));
        let inner = Fields::from(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Int32, true),
        ]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
            Field::new("d", DataType::Date32, true),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new("amount", DataType::Decimal128(10, 2), true),
            Field::new("f", DataType::Float64, true),
            Field::new("i", DataType::Int32, true),
            Field::new("tags", DataType::List(item.clone()), true),
            Field::new("s", DataType::Struct(inner.clone()), true),
        ]));
        let tags = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), None, Some(3)]),
            None,
            Some(vec![]),
        ]);
        let s = StructArray::try_new(
            inner,
            vec![
                Arc::new(StringArray::from(vec![Some("x"), None, Some("z")])),
                Arc::new(Int32Array::from(vec![Some(1), Some(2), None])),
            ],
            Some(NullBuffer::from(vec![true, true, false])),
        )
        .expect("struct");
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, -2, 300_000_000_000])),
                Arc::new(StringArray::from(vec![Some("a"), None, Some("ü")])),
                Arc::new(Date32Array::from(vec![Some(19000), None, Some(-5)])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![
                        Some(1_700_000_000_000_000),
                        None,
                        Some(0),
                    ])
                    .with_timezone("UTC"),
                ),
                Arc::new(
                    Decimal128Array::from(vec![Some(12345), Some(-1), None])
                        .with_precision_and_scale(10, 2)
                        .expect("decimal"),
                ),
                Arc::new(Float64Array::from(vec![Some(1.5), None, Some(-0.25)])),
                Arc::new(Int32Array::from(vec![None, Some(7), Some(-7)])),
                Arc::new(tags),
                Arc::new(s),
            ],
        )
        .expect("batch");
        let json = avro_schema_json(&schema, "t").expect("schema");
        let content = encode_data_block(&batch).expect("encode");
        assert_eq!(&content[..8], &[0, 0, 0, 3, 0, 0, 0, 3]);
        // The first record: id 1 is the long 1 (zig-zag 0x02), then name = branch 1 + "a".
        assert_eq!(&content[12..16], &[0x02, 0x02, 0x02, b'a']);
        let back = decode_data_block(&json, &content).expect("decode");
        assert_eq!(back.num_rows(), 3);
        // Any subset of the columns decodes to exactly those columns of the full decode (the
        // others skipped over: lists, structs, decimals, nullable and not).
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        for mask in 0u32..(1 << names.len()) {
            let wanted: Vec<&str> = (0..names.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| names[i])
                .chain(["not_in_the_block"])
                .collect();
            let part = decode_data_block_columns(&json, &content, Some(&wanted)).expect("subset");
            assert_eq!(part.num_rows(), 3);
            let part_schema = part.schema();
            let got: Vec<&str> = part_schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            assert_eq!(got, wanted[..wanted.len() - 1], "mask {mask:b}");
            for (i, name) in got.iter().enumerate() {
                let full = back.column_by_name(name).expect("column");
                assert_eq!(
                    part.column(i).to_data(),
                    full.to_data(),
                    "{name}, mask {mask:b}"
                );
            }
        }
        for (i, f) in schema.fields().iter().enumerate() {
            let a = crate::schema::align_batch(&back, &schema).expect("align");
            assert_eq!(
                a.column(i).to_data(),
                batch.column(i).to_data(),
                "column {}",
                f.name()
            );
        }
    }

    #[test]
    fn data_block_rejects_strings_that_are_not_utf8() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("ab"), Some("cd")])),
            ],
        )
        .expect("batch");
        let json = avro_schema_json(&schema, "t").expect("schema");
        let mut content = encode_data_block(&batch).expect("encode");
        let at = content.len() - 1;
        assert_eq!(content[at], b'd');
        content[at] = 0xff;
        let err = decode_data_block(&json, &content).expect_err("bad UTF-8");
        assert!(err.to_string().contains("not UTF-8"), "{err}");
        // Half of a two-byte character at the end of one value and the other half at the start of
        // the next: the column's bytes are valid UTF-8 end to end, each value is not.
        let mut content = encode_data_block(&batch).expect("encode");
        let (first, second) = (content.len() - 10, content.len() - 2);
        assert_eq!((content[first], content[second]), (b'b', b'c'));
        content[first] = 0xc3;
        content[second] = 0xbc;
        let err = decode_data_block(&json, &content).expect_err("split character");
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    /// A data block of `records` (each the Avro binary of one record), framed as lake writes it.
    fn block_of(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&BLOCK_VERSION.to_be_bytes());
        out.extend_from_slice(&(records.len() as i32).to_be_bytes());
        for r in records {
            out.extend_from_slice(&(r.len() as i32).to_be_bytes());
            out.extend_from_slice(r);
        }
        out
    }

    fn long(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        codec::write_long(&mut out, v);
        out
    }

    /// Single-branch unions carry their branch index like any union.
    #[test]
    fn single_branch_unions_read_their_branch() {
        let json = r#"{"type":"record","name":"t","fields":[
            {"name":"x","type":["int"]},{"name":"n","type":["null"]},{"name":"k","type":"string"}]}"#;
        let rec = [long(0), long(5), long(0), long(1), b"a".to_vec()].concat();
        let b = decode_data_block(json, &block_of(std::slice::from_ref(&rec))).expect("decode");
        assert_eq!(b.column(0).as_primitive::<Int32Type>().value(0), 5);
        assert_eq!(b.column(2).as_string::<i32>().value(0), "a");
        let k = decode_data_block_columns(json, &block_of(&[rec]), Some(&["k"])).expect("k");
        assert_eq!(k.column(0).as_string::<i32>().value(0), "a");
        // A branch the union does not have is an error, decoded or skipped.
        let bad = [long(1), long(5), long(0), long(1), b"a".to_vec()].concat();
        assert!(decode_data_block(json, &block_of(std::slice::from_ref(&bad))).is_err());
        assert!(decode_data_block_columns(json, &block_of(&[bad]), Some(&["k"])).is_err());
    }

    /// Nested arrays of zero-width items cannot make a few bytes cost more steps than the record
    /// has bytes, whether the field is decoded or skipped.
    #[test]
    fn nested_zero_width_arrays_are_bounded_by_the_record() {
        let json = r#"{"type":"record","name":"t","fields":[
            {"name":"a","type":{"type":"array","items":{"type":"array","items":"null"}}},
            {"name":"k","type":"string"}]}"#;
        // 2,000 inner arrays, each claiming a billion nulls.
        let mut rec = long(2_000);
        for _ in 0..2_000 {
            rec.extend(long(1_000_000_000));
            rec.extend(long(0));
        }
        rec.extend(long(0));
        rec.extend([long(1), b"a".to_vec()].concat());
        let content = block_of(&[rec]);
        let started = std::time::Instant::now();
        let full = decode_data_block(json, &content).expect_err("too many items");
        let skipped = decode_data_block_columns(json, &content, Some(&["k"])).expect_err("skip");
        assert!(full.to_string().contains("items"), "{full}");
        assert!(skipped.to_string().contains("items"), "{skipped}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // Nested arrays of real items stay within the budget, decoded or skipped.
        let json = json.replace(r#""items":"null""#, r#""items":"long""#);
        let ok = [
            long(2),
            long(2),
            long(7),
            long(8),
            long(0),
            long(1),
            long(9),
            long(0),
            long(0),
            long(1),
            b"a".to_vec(),
        ]
        .concat();
        let b =
            decode_data_block(&json, &block_of(std::slice::from_ref(&ok))).expect("nested longs");
        assert_eq!(b.column(0).as_list::<i32>().value(0).len(), 2);
        let k = decode_data_block_columns(&json, &block_of(&[ok]), Some(&["k"])).expect("k");
        assert_eq!(k.column(0).as_string::<i32>().value(0), "a");
    }

    #[test]
    fn delete_block_round_trips_ordering_values() {
        let records = vec![
            DeletedRecord {
                key: "1".into(),
                partition: "p=a".into(),
                ordering: OrderingValue::Long(42),
            },
            DeletedRecord {
                key: "2".into(),
                partition: String::new(),
                ordering: OrderingValue::String("0001.0002".into()),
            },
            DeletedRecord {
                key: "3".into(),
                partition: String::new(),
                ordering: OrderingValue::CommitTime,
            },
            DeletedRecord {
                key: "4".into(),
                partition: String::new(),
                ordering: OrderingValue::Decimal(-12_500_000_000_000_000),
            },
            DeletedRecord {
                key: "5".into(),
                partition: String::new(),
                ordering: OrderingValue::Double(2.5),
            },
        ];
        let content = encode_delete_block(&records);
        assert_eq!(&content[..4], &[0, 0, 0, 3]);
        let back = decode_delete_block(&content).expect("decode");
        assert_eq!(back, records);
        // Spark's SQL DELETE writes IntWrapper(0): a commit-time delete.
        let spark = DeletedRecord {
            key: "9".into(),
            partition: String::new(),
            ordering: OrderingValue::Int(0),
        };
        let back = decode_delete_block(&encode_delete_block(&[spark])).expect("decode");
        assert_eq!(back[0].ordering, OrderingValue::CommitTime);
        assert_eq!(minimal_be(-1), vec![0xff]);
        assert_eq!(minimal_be(128), vec![0x00, 0x80]);
    }
}
