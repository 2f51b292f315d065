//! Seeded mutation fuzzing of the ingest decoders of untrusted bytes: Kafka message values (Debezium
//! JSON, Confluent-framed Avro datums with their writer schema) and schema-registry schemas. Valid
//! encodings are flipped, truncated, extended and overwritten with extreme varints; every decoder
//! must return rows or an error naming the message, never panic or allocate without bound.
//! `LAKE_SOAK=1` runs many more mutations.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use apache_avro::types::Value as Avro;
use apache_avro::writer::datum::GenericDatumWriter;
use lake_ingest::TableShape;
use lake_ingest::avro::WriterSchema;
use lake_ingest::config::{DecoderKind, MessageFormat};
use lake_ingest::messages::{DecodeSpec, Message, decode_messages};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn iterations() -> usize {
    if std::env::var_os("LAKE_SOAK").is_some() {
        200_000
    } else {
        3_000
    }
}

/// One mutation of `valid`.
fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut b = valid.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(b.len().max(1));
        match rng.below(5) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.below(8),
            1 => b.truncate(at),
            2 => b.extend((0..rng.below(9)).map(|_| rng.next() as u8)),
            // A varint claiming a huge count or length, where a count or length may be.
            3 if at <= b.len() => {
                let huge = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
                b.splice(at..at, huge.iter().copied());
            }
            _ if !b.is_empty() => b[at] = rng.next() as u8,
            _ => {}
        }
    }
    b
}

const SCHEMA: &str = r#"{"type":"record","name":"Envelope","namespace":"s.db.t","fields":[
  {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
    {"name":"id","type":"long"},
    {"name":"tags","type":{"type":"array","items":"string"}},
    {"name":"attrs","type":{"type":"map","values":"long"}},
    {"name":"price","type":["null",{"type":"bytes","scale":2,"precision":10,"logicalType":"decimal"}]},
    {"name":"d","type":{"type":"int","connect.name":"io.debezium.time.Date"}}]}]},
  {"name":"after","type":["null","Value"]},
  {"name":"source","type":{"type":"record","name":"Source","fields":[
    {"name":"file","type":"string"},{"name":"pos","type":"long"}]}},
  {"name":"op","type":"string"}]}"#;

fn valid_datum(schema: &WriterSchema) -> Vec<u8> {
    let row = Avro::Record(vec![
        ("id".into(), Avro::Long(42)),
        (
            "tags".into(),
            Avro::Array(vec![Avro::String("a".into()), Avro::String("b".into())]),
        ),
        (
            "attrs".into(),
            Avro::Map(HashMap::from([("k".to_owned(), Avro::Long(7))])),
        ),
        (
            "price".into(),
            Avro::Union(1, Box::new(Avro::Decimal(vec![0x30, 0x39].into()))),
        ),
        ("d".into(), Avro::Int(19_000)),
    ]);
    let env = Avro::Record(vec![
        ("before".into(), Avro::Union(0, Box::new(Avro::Null))),
        ("after".into(), Avro::Union(1, Box::new(row))),
        (
            "source".into(),
            Avro::Record(vec![
                ("file".into(), Avro::String("mysql-bin.000003".into())),
                ("pos".into(), Avro::Long(154)),
            ]),
        ),
        ("op".into(), Avro::String("c".into())),
    ]);
    let mut framed = vec![0, 0, 0, 0, 7];
    let datum = GenericDatumWriter::builder(&schema.schema)
        .build()
        .and_then(|w| w.write_value_to_vec(env))
        .expect("encodes");
    framed.extend(datum);
    framed
}

fn spec(format: MessageFormat, schema: Option<Arc<WriterSchema>>) -> DecodeSpec {
    DecodeSpec {
        kind: DecoderKind::Debezium,
        shape: TableShape {
            key_fields: vec!["id".into()],
            ..Default::default()
        },
        format,
        schemas: schema.map(|s| Arc::new(HashMap::from([(7, Ok(s))]))),
        ..Default::default()
    }
}

fn message(value: Vec<u8>) -> Message {
    Message {
        topic: "s.db.t".into(),
        partition: 1,
        offset: 9,
        key: None,
        value: Some(value),
    }
}

#[test]
fn avro_messages_never_panic() {
    let schema = Arc::new(WriterSchema::parse(7, SCHEMA).expect("schema"));
    let valid = valid_datum(&schema);
    let spec = spec(MessageFormat::Avro, Some(schema));
    let d =
        decode_messages(&[message(valid.clone())], &spec, false).expect("the valid one decodes");
    assert_eq!(d.batch.expect("rows").rows.num_rows(), 1);
    let mut rng = Rng(0x5eed_a7f0);
    for i in 0..iterations() {
        let bytes = mutate(&mut rng, &valid);
        let r = catch_unwind(AssertUnwindSafe(|| {
            decode_messages(&[message(bytes.clone())], &spec, true)
        }));
        match r {
            Ok(Ok(d)) => {
                for (_, e) in d.rejected {
                    assert_eq!((e.partition, e.offset), (1, 9), "{e}");
                }
            }
            Ok(Err(e)) => panic!("keep_going returned an error at mutation {i}: {e}"),
            Err(_) => panic!("mutation {i} panicked: {bytes:?}"),
        }
    }
}

#[test]
fn json_messages_never_panic() {
    let valid = br#"{"schema":{"type":"struct","fields":[{"type":"struct","field":"after","fields":[{"type":"int64","field":"id"},{"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","parameters":{"scale":"2"},"field":"p"},{"type":"int32","name":"io.debezium.time.Date","field":"d"}]}]},"payload":{"before":null,"after":{"id":1,"p":"MDk=","d":19000},"op":"c","source":{"file":"mysql-bin.000003","pos":154}}}"#;
    let spec = spec(MessageFormat::Json, None);
    let mut rng = Rng(0x0dd_ba11);
    for i in 0..iterations() {
        let bytes = mutate(&mut rng, valid);
        let r = catch_unwind(AssertUnwindSafe(|| {
            decode_messages(&[message(bytes.clone())], &spec, true)
        }));
        assert!(
            matches!(r, Ok(Ok(_))),
            "mutation {i}: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn registry_schemas_never_panic() {
    let mut rng = Rng(0xc0ff_ee);
    for _ in 0..iterations() / 3 {
        let text = mutate(&mut rng, SCHEMA.as_bytes());
        let text = String::from_utf8_lossy(&text);
        let r = catch_unwind(AssertUnwindSafe(|| {
            WriterSchema::parse(1, &text).map(|_| ())
        }));
        assert!(r.is_ok(), "{text}");
    }
}
