//! Log-block codec bench: lake's hand-written Arrow <-> Avro codec for Hudi's data blocks against
//! `arrow-avro` (Apache Arrow's Avro reader and writer, which hudi-rs builds on), on the same
//! 200k-row batch with Hudi's meta columns. Decoding is measured twice for `arrow-avro`: its own
//! container file, and the records of lake's data block wrapped as a container (exactly the bytes a
//! Hudi log block holds). Best of 5 each.
//!
//! Run: `cargo bench --bench log_codec`

mod common;

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use lake_table::avro_block::{decode_data_block, encode_data_block};
use lake_table::schema::{avro_schema_json, with_meta_columns};
use lake_table::timeline::avro::{Datum, write_bytes, write_long};

/// An Avro object container holding `records` (concatenated binary datums) in one block.
fn container(schema_json: &str, count: usize, records: &[u8]) -> Vec<u8> {
    let mut out = b"Obj\x01".to_vec();
    Datum::Map(vec![
        (
            "avro.schema".into(),
            Datum::Bytes(schema_json.as_bytes().to_vec()),
        ),
        ("avro.codec".into(), Datum::Bytes(b"null".to_vec())),
    ])
    .encode(&mut out);
    let sync = [7u8; 16];
    out.extend_from_slice(&sync);
    write_long(&mut out, count as i64);
    write_bytes(&mut out, records);
    out.extend_from_slice(&sync);
    out
}

/// The records of a lake data block (version, count, then length-prefixed datums), concatenated.
fn block_records(content: &[u8]) -> (usize, Vec<u8>) {
    let count = i32::from_be_bytes(content[4..8].try_into().expect("count")) as usize;
    let mut pos = 8;
    let mut out = Vec::with_capacity(content.len());
    for _ in 0..count {
        let len = i32::from_be_bytes(content[pos..pos + 4].try_into().expect("len")) as usize;
        out.extend_from_slice(&content[pos + 4..pos + 4 + len]);
        pos += 4 + len;
    }
    (count, out)
}

fn arrow_avro_decode(ocf: &[u8]) -> usize {
    arrow_avro::reader::ReaderBuilder::new()
        .with_batch_size(8192)
        .build(Cursor::new(ocf))
        .expect("reader")
        .map(|b| b.expect("batch").num_rows())
        .sum()
}

fn main() {
    let rows = 200_000i64;
    let data = common::batch(0..rows, 1);
    let schema = with_meta_columns(&data.schema());
    let meta: Vec<ArrayRef> = (0..5)
        .map(|i| {
            Arc::new(StringArray::from_iter_values(
                (0..rows).map(|r| format!("m{i}-{r:08}")),
            )) as ArrayRef
        })
        .collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        meta.into_iter()
            .chain(data.columns().iter().cloned())
            .collect(),
    )
    .expect("batch");
    let schema_json = avro_schema_json(&schema, "bench").expect("schema");

    let (lake_enc, content) = common::best(5, || encode_data_block(&batch).expect("encode"));
    let (lake_dec, decoded) = common::best(5, || {
        decode_data_block(&schema_json, &content).expect("decode")
    });
    assert_eq!(decoded.num_rows(), rows as usize);

    let (aa_enc, ocf) = common::best(5, || {
        let mut w =
            arrow_avro::writer::AvroWriter::new(Vec::new(), (*schema).clone()).expect("writer");
        w.write(&batch).expect("write");
        w.finish().expect("finish");
        w.into_inner()
    });
    let (aa_dec, n) = common::best(5, || arrow_avro_decode(&ocf));
    assert_eq!(n, rows as usize);
    let (count, records) = block_records(&content);
    let hudi_ocf = container(&schema_json, count, &records);
    let (aa_dec_hudi, n) = common::best(5, || arrow_avro_decode(&hudi_ocf));
    assert_eq!(n, rows as usize);

    let mb = content.len() as f64 / 1e6;
    let rate = |d: Duration| {
        format!(
            "{:.0} MB/s, {:.2} M rows/s",
            mb / d.as_secs_f64(),
            rows as f64 / d.as_secs_f64() / 1e6
        )
    };
    println!(
        "{rows} rows, {} columns, {mb:.1} MB of Avro records",
        schema.fields().len()
    );
    println!(
        "encode  lake {:>8.1} ms ({})   arrow-avro {:>8.1} ms ({})",
        ms(lake_enc),
        rate(lake_enc),
        ms(aa_enc),
        rate(aa_enc)
    );
    println!(
        "decode  lake {:>8.1} ms ({})   arrow-avro {:>8.1} ms ({}); lake's block records {:.1} ms ({})",
        ms(lake_dec),
        rate(lake_dec),
        ms(aa_dec),
        rate(aa_dec),
        ms(aa_dec_hudi),
        rate(aa_dec_hudi)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
