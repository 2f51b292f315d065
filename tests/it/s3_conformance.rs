//! The S3 server honours the atomic-publish contract the timeline relies on.

use std::sync::Arc;

use bytes::Bytes;
use lake_timeline::{Action, Error, Instant, InstantTime, Layout, State, Storage, Timeline};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;

use crate::kit::{s3, unique};

fn storage() -> Storage {
    let env = &s3().env;
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let store = AmazonS3Builder::new()
        .with_endpoint(get("AWS_ENDPOINT_URL"))
        .with_access_key_id(get("AWS_ACCESS_KEY_ID"))
        .with_secret_access_key(get("AWS_SECRET_ACCESS_KEY"))
        .with_region(get("AWS_REGION"))
        .with_allow_http(true)
        .with_bucket_name("test")
        .build()
        .expect("s3 store");
    let root = unique("conformance");
    Storage::new(
        Arc::new(store),
        Path::from(root.as_str()),
        format!("s3://test/{root}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_completions_of_one_instant_have_exactly_one_winner_on_s3() {
    let s = storage();
    let time: InstantTime = "20250101000000001".parse().expect("time");
    let inflight = Timeline::start(&s, Layout::V1, time, Action::Commit, Bytes::new())
        .await
        .expect("start");
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                Timeline::complete(
                    &s,
                    Layout::V1,
                    &inflight,
                    Bytes::from(format!("{{\"writer\":{i}}}")),
                )
                .await
            })
        })
        .collect();
    let mut winners = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => winners += 1,
            Err(Error::CommitConflict { .. }) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(winners, 1);
    let timeline = Timeline::load(&s, Layout::V1).await.expect("load");
    let states: Vec<State> = timeline
        .instants()
        .iter()
        .map(|i: &Instant| i.state)
        .collect();
    assert_eq!(states, [State::Completed]);
}
