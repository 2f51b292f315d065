//! Seeded mutation fuzzing of every decoder of untrusted bytes in the table crate: log files (block
//! framing), Avro data and delete blocks, the timeline's Avro containers, instant file names, JSON
//! and Avro (timeline layout 2) commit metadata, compaction plans, ledger entries and archived
//! timeline files. Valid encodings are flipped, truncated,
//! spliced and overwritten with extreme integers; every decoder must return a value or an error,
//! never panic or allocate without bound. `LAKE_SOAK=1` runs many more mutations.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use bytes::Bytes;
use lake_table::avro_block::{
    DeletedRecord, OrderingValue, decode_data_block, decode_data_block_columns,
    decode_delete_block, encode_data_block, encode_delete_block,
};
use lake_table::compaction_plan::{CompactionOperation, CompactionPlan};
use lake_table::log_format::{BlockType, LogBlock, header, read_blocks};
use lake_table::schema::{avro_schema_json, with_meta_columns};
use lake_table::timeline::avro::read_container;
use lake_table::timeline::wire;
use lake_table::timeline::{Action, CommitMetadata, Instant, InstantTime, State};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn iterations() -> u64 {
    if std::env::var("LAKE_SOAK").is_ok_and(|v| v == "1") {
        200_000
    } else {
        3_000
    }
}

/// A mutation of `valid`: bit flips, truncation, a spliced run, or an extreme integer written over
/// a random position (huge lengths and counts are the classic decoder crash).
fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut b = valid.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            b.push(rng.next() as u8);
            continue;
        }
        match rng.below(6) {
            0 => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => b.truncate(rng.below(b.len())),
            2 => {
                let i = rng.below(b.len());
                let n = rng.below(16);
                let run: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(i..i, run);
            }
            3 => {
                let i = rng.below(b.len());
                let v: [u8; 8] = match rng.below(4) {
                    0 => i64::MAX.to_be_bytes(),
                    1 => i64::MIN.to_be_bytes(),
                    2 => (i32::MAX as i64).to_be_bytes(),
                    _ => [0xff; 8],
                };
                for (k, x) in v.iter().enumerate() {
                    if let Some(slot) = b.get_mut(i + k) {
                        *slot = *x;
                    }
                }
            }
            4 => {
                // A zig-zag varint of a huge value (Avro lengths and counts).
                let i = rng.below(b.len());
                let run = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
                b.splice(i..i, run);
            }
            _ => {
                let i = rng.below(b.len());
                let j = rng.below(b.len());
                b.swap(i, j);
            }
        }
    }
    b
}

/// Runs `decode` on many mutations of `valid`; a panic names the seed and the input.
fn fuzz(name: &str, seed: u64, valid: &[u8], decode: impl Fn(&[u8])) {
    decode(valid);
    let mut rng = Rng(seed | 1);
    for i in 0..iterations() {
        let input = mutate(&mut rng, valid);
        if catch_unwind(AssertUnwindSafe(|| decode(&input))).is_err() {
            panic!("{name}: decoder panicked on mutation {i} (seed {seed}): {input:02x?}");
        }
    }
}

fn sample_batch() -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
    ]));
    let data = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![Some("a"), None, Some("ccc")])),
        ],
    )
    .expect("batch");
    let full = with_meta_columns(&schema);
    let mut cols: Vec<arrow::array::ArrayRef> = (0..5)
        .map(|_| Arc::new(StringArray::from(vec!["m"; 3])) as arrow::array::ArrayRef)
        .collect();
    cols.extend(data.columns().iter().cloned());
    RecordBatch::try_new(full, cols).expect("full batch")
}

#[test]
fn avro_data_blocks_never_panic() {
    let batch = sample_batch();
    let schema = avro_schema_json(&batch.schema(), "t").expect("schema");
    let valid = encode_data_block(&batch).expect("encode");
    fuzz("data block", 11, &valid, |b| {
        let _ = decode_data_block(&schema, b);
        // Projected: the fields before the last wanted one are skipped, the rest never read.
        let _ = decode_data_block_columns(&schema, b, Some(&["_hoodie_record_key", "name"]));
    });
}

#[test]
fn avro_delete_blocks_never_panic() {
    let valid = encode_delete_block(&[
        DeletedRecord {
            key: "k1".into(),
            partition: "p=1".into(),
            ordering: OrderingValue::Long(7),
        },
        DeletedRecord {
            key: "k2".into(),
            partition: "".into(),
            ordering: OrderingValue::CommitTime,
        },
    ]);
    fuzz("delete block", 12, &valid, |b| {
        let _ = decode_delete_block(b);
    });
}

#[test]
fn log_files_never_panic() {
    let batch = sample_batch();
    let schema = avro_schema_json(&batch.schema(), "t").expect("schema");
    let block = LogBlock {
        block_type: BlockType::AvroData,
        header: BTreeMap::from([
            (header::INSTANT_TIME, "20250101000000001".to_owned()),
            (header::SCHEMA, schema),
        ]),
        content: Bytes::from(encode_data_block(&batch).expect("encode")),
        footer: BTreeMap::new(),
    };
    let mut valid = block.encode();
    valid.extend(block.encode());
    fuzz("log file", 13, &valid, |b| {
        let _ = read_blocks(&Bytes::copy_from_slice(b));
    });
}

#[test]
fn timeline_avro_containers_never_panic() {
    let plan = CompactionPlan {
        operations: vec![CompactionOperation {
            base_instant: "20250101000000001".into(),
            delta_files: vec![".f_20250101000000001.log.1_0-0-0".into()],
            data_file: Some("f_0-0-0_20250101000000001.parquet".into()),
            file_id: "f".into(),
            partition: "p=1".into(),
            metrics: vec![("TOTAL_LOG_FILES".into(), 1.0)],
        }],
        extra_metadata: Vec::new(),
    };
    let valid = plan.to_avro();
    let t: InstantTime = "20250101000000002".parse().expect("instant");
    fuzz("compaction plan", 14, &valid, |b| {
        let _ = CompactionPlan::from_avro(b, t);
    });
    // Every typed timeline record goes through lake's bounded decoder, then apache-avro.
    let meta = wire::RollbackMetadata {
        start_rollback_time: "20250101000000002".into(),
        time_taken_in_millis: 3,
        total_files_deleted: 1,
        commits_rollback: vec!["20250101000000001".into()],
        partition_metadata: [(
            "p".to_owned(),
            wire::RollbackPartitionMetadata {
                partition_path: "p".into(),
                success_delete_files: vec!["p/f.parquet".into()],
                ..Default::default()
            },
        )]
        .into(),
        version: Some(1),
        instants_rollback: vec![wire::InstantInfo {
            commit_time: "20250101000000001".into(),
            action: "commit".into(),
        }],
    };
    let rollback = wire::write_container(wire::rollback_metadata_schema(), &meta).expect("write");
    fuzz("avro container", 15, &rollback, |b| {
        let _ = read_container(b);
        let _ = wire::read_container::<wire::RollbackMetadata>(wire::rollback_metadata_schema(), b);
        for action in [
            Action::Rollback,
            Action::Clean,
            Action::Savepoint,
            Action::Restore,
        ] {
            let _ = wire::content_json(action, State::Completed, b);
        }
    });
}

#[test]
fn instant_names_and_commit_metadata_never_panic() {
    fuzz(
        "instant file name",
        16,
        b"20250101000000001_20250101000000002.deltacommit",
        |b| {
            if let Ok(s) = std::str::from_utf8(b) {
                let _ = Instant::parse_file_name(s);
                let _ = s.parse::<InstantTime>();
            }
        },
    );
    let meta = br#"{"partitionToWriteStats":{"p":[{"fileId":"f","path":"p/f.parquet","prevCommit":"null","numWrites":1,"numDeletes":0,"numUpdateWrites":0,"numInserts":1,"totalWriteBytes":5,"partitionPath":"p","fileSizeInBytes":5}]},"compacted":false,"extraMetadata":{"schema":"{}"},"operationType":"UPSERT"}"#;
    fuzz("commit metadata", 17, meta, |b| {
        let _ = CommitMetadata::from_json_bytes(b);
    });
    // Timeline layout 2: an Avro container holding replace commit metadata.
    let replace = wire::ReplaceCommitMetadata {
        partition_to_write_stats: Some(
            [(
                "p".to_owned(),
                vec![wire::WriteStat {
                    file_id: Some("f-0".into()),
                    num_writes: Some(3),
                    ..Default::default()
                }],
            )]
            .into(),
        ),
        operation_type: Some("CLUSTER".into()),
        partition_to_replace_file_ids: Some([("p".to_owned(), vec!["g-0".to_owned()])].into()),
        ..Default::default()
    };
    let avro = wire::write_container(wire::replace_metadata_schema(), &replace).expect("write");
    let m = CommitMetadata::from_avro_bytes(&avro).expect("lake's container decodes");
    assert_eq!(m.operation_type.as_deref(), Some("CLUSTER"));
    assert_eq!(m.partition_to_write_stats["p"][0].num_writes, 3);
    assert_eq!(m.partition_to_replace_file_ids["p"], ["g-0"]);
    fuzz("avro commit metadata", 18, &avro, |b| {
        let _ = CommitMetadata::from_avro_bytes(b);
    });
}

#[test]
fn ledger_entries_never_panic() {
    let header = lake_table::commit::Header {
        file: "20250101000000001.commit".into(),
        rollback: vec!["20250101000000000".into()],
    };
    let valid = lake_table::commit::ledger::encode(&header, b"{}");
    fuzz("ledger entry", 18, &valid, |b| {
        let _ = lake_table::commit::ledger::decode(1, &Bytes::copy_from_slice(b));
    });
}

#[test]
fn archived_timeline_files_never_panic() {
    use lake_table::archive::v1::{Entry, decode, encode, field};
    use lake_table::timeline::State;
    let commit = serde_json::json!({
        "partitionToWriteStats": {"p": [{"fileId": "f", "path": "p/f.parquet", "numWrites": 2}]},
        "extraMetadata": {"schema": "{}"},
    });
    let entries: Vec<Entry> = (0..12u64)
        .map(|i| Entry {
            time: format!("{}", 20250101000000000 + i).parse().expect("time"),
            action: "commit".into(),
            state: if i % 2 == 0 {
                State::Completed
            } else {
                State::Requested
            },
            completion: None,
            payload: (i % 2 == 0).then(|| (field::COMMIT.to_owned(), commit.clone())),
        })
        .collect();
    let valid = encode(&entries).expect("encode");
    fuzz("archived timeline file", 19, &valid, |b| {
        let _ = decode("fuzz", &Bytes::copy_from_slice(b));
    });
}
