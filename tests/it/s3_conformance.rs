//! The S3 server honours the atomic-publish contract the timeline relies on.

use bytes::Bytes;
use lake_timeline::{Action, Error, Instant, InstantTime, Layout, State, Timeline};

use crate::kit::{s3_storage, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_completions_of_one_instant_have_exactly_one_winner_on_s3() {
    let s = s3_storage(&unique("conformance"));
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
