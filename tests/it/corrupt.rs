//! Damaged tables: a committed base or log file deleted, truncated or flipped, a garbage completed
//! instant, a garbage `hoodie.properties`. Every read (and write) fails with an error naming the
//! file — never older rows, never a panic — and a write commits nothing.

use crate::kit::{Place, lake_env, lake_ok};

/// A small table with three commits; returns its place.
fn table(table_type: &str) -> Place {
    let p = Place::local();
    lake_ok(
        &[
            "create",
            &p.uri,
            "--type",
            table_type,
            "--key",
            "id",
            "--ordering",
            "v",
            "--partition-by",
            "p",
            "--buckets",
            "1",
        ],
        &p.env,
    );
    for v in 1..=3 {
        let f = p.dir.path().join(format!("b{v}.jsonl"));
        let text: String = (0..20)
            .map(|id| format!("{{\"id\":{id},\"p\":\"x\",\"v\":{v}}}\n"))
            .collect();
        std::fs::write(&f, text).expect("input");
        lake_ok(
            &["write", &p.uri, "--input", f.to_str().expect("utf8")],
            &p.env,
        );
    }
    p
}

/// The table's files under `dir` whose names satisfy `pick`, newest name last.
fn files(p: &Place, pick: impl Fn(&str) -> bool) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(std::path::Path::new(&p.uri).join("p=x"))
        .expect("partition")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|f| f.file_name().and_then(|n| n.to_str()).is_some_and(&pick))
        .collect();
    out.sort();
    out
}

/// `lake read` (and, when `write` is set, a `lake write`) fail naming `name`, without a panic.
fn fails_naming(p: &Place, name: &str, write: bool) {
    let mut runs = vec![vec!["read".to_owned(), p.uri.clone()]];
    if write {
        let f = p.dir.path().join("more.jsonl");
        std::fs::write(&f, "{\"id\":0,\"p\":\"x\",\"v\":9}\n").expect("input");
        runs.push(vec![
            "write".into(),
            p.uri.clone(),
            "--input".into(),
            f.display().to_string(),
        ]);
    }
    for args in runs {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = lake_env(&argv, &p.env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{argv:?} succeeded on a damaged table"
        );
        assert!(!stderr.contains("panicked"), "{argv:?} panicked: {stderr}");
        assert!(
            stderr.contains(name),
            "{argv:?} does not name {name}: {stderr}"
        );
    }
}

fn name_of(f: &std::path::Path) -> String {
    f.file_name()
        .and_then(|n| n.to_str())
        .expect("name")
        .to_owned()
}

#[test]
fn a_deleted_latest_base_file_is_an_error_naming_it() {
    let p = table("cow");
    let base = files(&p, |n| n.ends_with(".parquet"))
        .pop()
        .expect("base file");
    std::fs::remove_file(&base).expect("delete");
    fails_naming(&p, &name_of(&base), true);
}

#[test]
fn a_truncated_or_flipped_base_file_is_an_error_naming_it() {
    let p = table("cow");
    let base = files(&p, |n| n.ends_with(".parquet"))
        .pop()
        .expect("base file");
    let bytes = std::fs::read(&base).expect("read");
    std::fs::write(&base, &bytes[..bytes.len() / 2]).expect("truncate");
    fails_naming(&p, &name_of(&base), false);
}

#[test]
fn deleted_truncated_or_flipped_log_files_are_errors_naming_them() {
    for damage in ["delete", "truncate", "flip"] {
        let p = table("mor");
        let log = files(&p, |n| n.contains(".log.")).pop().expect("log file");
        let bytes = std::fs::read(&log).expect("read");
        match damage {
            "delete" => std::fs::remove_file(&log).expect("delete"),
            "truncate" => std::fs::write(&log, &bytes[..bytes.len() - 9]).expect("truncate"),
            _ => {
                let mut b = bytes.clone();
                // The block-length field right after the magic.
                b[9] ^= 0x40;
                std::fs::write(&log, b).expect("flip");
            }
        }
        fails_naming(&p, &name_of(&log), damage == "delete");
    }
}

#[test]
fn garbage_instants_and_properties_are_errors_naming_them() {
    let p = table("cow");
    let hoodie = std::path::Path::new(&p.uri).join(".hoodie");
    let mut commits: Vec<_> = std::fs::read_dir(&hoodie)
        .expect("timeline")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|f| f.extension().is_some_and(|x| x == "commit"))
        .collect();
    commits.sort();
    let last = commits.pop().expect("commit");
    std::fs::write(&last, b"{not json").expect("garbage");
    fails_naming(&p, &name_of(&last), true);

    let p = table("cow");
    let props = std::path::Path::new(&p.uri).join(".hoodie/hoodie.properties");
    std::fs::write(&props, b"\xff\xfe garbage\nhoodie.table.type=NOPE\n").expect("garbage");
    fails_naming(&p, "hoodie.properties", true);
}
