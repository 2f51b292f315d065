//! The simple (key-lookup) index sizes file groups by the target file size: new records fill new file
//! groups of about that size, later inserts top up small files, updates find their stored file group.

use std::collections::BTreeMap;
use std::path::Path;

use lake_table::{Table, timeline::Storage};

use crate::kit::{Place, hudi_read, lake_ok};

const TARGET: u64 = 64 * 1024;

fn rows_file(dir: &Path, name: &str, ids: impl Iterator<Item = u64>, v: u64) -> String {
    let text: String = ids
        .map(|id| {
            format!(
                "{{\"id\":{id},\"p\":\"p{}\",\"v\":{v},\"payload\":\"{:016x}{:016x}\"}}\n",
                id % 2,
                id.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                id ^ v
            )
        })
        .collect();
    let f = dir.join(name);
    std::fs::write(&f, text).expect("write");
    f.display().to_string()
}

async fn base_files(storage: Storage) -> Vec<(String, u64)> {
    let table = Table::open_storage(storage).await.expect("open");
    let slices = table.file_slices(None).await.expect("slices");
    slices
        .into_iter()
        .filter_map(|s| s.base_file)
        .map(|b| (format!("{}/{}", b.partition, b.file_id), b.size))
        .collect()
}

async fn run(p: &Place) {
    let (uri, storage, env, dir) = (
        p.uri.as_str(),
        p.storage.clone(),
        p.env.as_slice(),
        p.dir.path(),
    );
    let target = TARGET.to_string();
    lake_ok(
        &[
            "create",
            uri,
            "--key",
            "id",
            "--ordering",
            "v",
            "--partition-by",
            "p",
            "--index",
            "simple",
            "--target-file-size",
            &target,
        ],
        env,
    );
    let f1 = rows_file(dir, "1.jsonl", 0..20_000, 1);
    lake_ok(&["write", uri, "--input", &f1], env);
    let first = base_files(storage.clone()).await;
    assert!(
        first.len() >= 6,
        "20k rows of ~45 bytes should need several 64 KiB files: {first:?}"
    );
    assert!(
        first.iter().all(|(_, size)| *size <= TARGET * 3 / 2),
        "{first:?}"
    );

    // Updates of 3000 stored keys and 500 new keys.
    let f2 = rows_file(
        dir,
        "2.jsonl",
        (0..3000).map(|i| i * 6).chain(20_000..20_500),
        2,
    );
    let out = lake_ok(&["write", uri, "--input", &f2], env);
    assert!(out.contains("500 inserted, 3000 updated"), "{out}");
    let second = base_files(storage).await;
    let first_ids: BTreeMap<_, _> = first.into_iter().collect();
    let grown = second
        .iter()
        .filter(|(id, _)| !first_ids.contains_key(id))
        .count();
    assert!(
        grown <= 2,
        "500 new rows should top up small files, not open {grown} new file groups"
    );
    assert!(
        second.iter().all(|(_, size)| *size <= TARGET * 3 / 2),
        "{second:?}"
    );

    let rows = hudi_read(uri, &["--sort", "id"], env);
    assert_eq!(rows.len(), 20_500, "no key duplicated or lost");
    let mut ids: Vec<u64> = rows.iter().map(|r| r["id"].as_u64().expect("id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 20_500);
    let updated = rows.iter().filter(|r| r["v"].as_u64() == Some(2)).count();
    assert_eq!(updated, 3500);
    let props = lake_ok(&["timeline", uri], env);
    assert_eq!(
        props.lines().filter(|l| l.contains("COMPLETED")).count(),
        2,
        "{props}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_index_sizes_file_groups_by_target_local() {
    let p = Place::local();
    run(&p).await;
    let props =
        std::fs::read_to_string(p.dir.path().join("t/.hoodie/hoodie.properties")).expect("props");
    assert!(
        props.contains("hoodie.index.type=SIMPLE")
            && props.contains("hoodie.parquet.max.file.size=65536"),
        "{props}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_index_sizes_file_groups_by_target_on_s3() {
    run(&Place::s3("sized")).await;
}
