//! The spool on a real local store: durable acceptance, the budget, the
//! route queues (`concurrency`, `fifo`), settling attempts, the admin
//! actions, and recovery after a restart.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::local::{Job, exists};
use super::store::{Op, Store};
use super::*;
use crate::base::settings::{SpoolBackend, SpoolSettings};

fn request(body: &str) -> StoredRequest {
    StoredRequest {
        method: "POST".into(),
        path: "/hook".into(),
        remainder: String::new(),
        query: None,
        headers: format!("Content-Length: {}\r\n", body.len()).into_bytes(),
        body: Bytes::copy_from_slice(body.as_bytes()),
    }
}

/// Accepts `n` deliveries for route `hook`.
async fn fill(spool: &Spool, n: usize) {
    for i in 0..n {
        spool
            .enqueue("hook", None, None, &request(&i.to_string()))
            .await
            .unwrap();
    }
}

fn spool(dir: &Path, max_bytes: u64) -> Spool {
    let settings = SpoolSettings {
        backend: SpoolBackend::Local(dir.to_owned()),
        max_bytes,
    };
    let state = State::new(
        &crate::base::settings::StateSettings {
            redis: None,
            timeout: Duration::from_millis(100),
            max_entries: 100,
        },
        Metrics::new(),
    )
    .unwrap();
    Spool::new(&settings, false, state, Metrics::new()).unwrap()
}

fn route(text: &str) -> Arc<Route> {
    let toml = format!(
        "[[routes]]\nname = \"hook\"\npath = \"/hook\"\nupstream = \"http://127.0.0.1:9\"\n\
         verify = {{ scheme = \"rye\", secrets = [\"k\"] }}\ndelivery = \"async\"\n{text}"
    );
    let config = crate::config::load_str(Path::new("c.toml"), &toml)
        .unwrap()
        .config;
    Arc::clone(config.routes.iter().next().unwrap())
}

#[tokio::test]
async fn accepted_deliveries_survive_a_restart_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let first = spool(dir.path(), 1 << 20);
    assert!(
        !exists(dir.path()),
        "nothing is created before it is needed"
    );
    let mut ids = Vec::new();
    for i in 0..5 {
        let body = format!("event {i}");
        ids.push(
            first
                .enqueue("hook", None, None, &request(&body))
                .await
                .unwrap(),
        );
    }
    assert!(ids.windows(2).all(|w| w[0].number < w[1].number), "{ids:?}");
    drop(first);
    let again = spool(dir.path(), 1 << 20);
    let listed: Vec<DeliveryId> = again
        .list(Some("hook"), Some(Status::Pending), 10)
        .await
        .unwrap()
        .iter()
        .map(Meta::delivery_id)
        .collect();
    assert_eq!(listed, ids, "tags are stored with their deliveries");
    assert_eq!(
        again.request(ids[2].number).await.unwrap().unwrap(),
        request("event 2")
    );
    let newer = again
        .enqueue("hook", None, None, &request("later"))
        .await
        .unwrap();
    assert!(
        newer.number > ids[4].number,
        "numbers keep growing after a restart"
    );
}

#[tokio::test]
async fn an_id_with_another_tag_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path(), 1 << 20);
    let a = spool
        .enqueue("hook", None, None, &request("a"))
        .await
        .unwrap();
    let b = spool
        .enqueue("hook", None, None, &request("b"))
        .await
        .unwrap();
    assert_eq!(b.number, a.number + 1);
    assert_ne!(a.tag, b.tag, "tags are random");
    // The neighbour's number with this delivery's tag, or a tag one off.
    for wrong in [
        DeliveryId {
            number: b.number,
            tag: a.tag,
        },
        DeliveryId {
            number: a.number,
            tag: a.tag ^ 1,
        },
        DeliveryId {
            number: a.number,
            tag: 0,
        },
    ] {
        assert!(spool.get(wrong).await.unwrap().is_none(), "{wrong}");
        assert_eq!(spool.retry(wrong).await, Err(AdminError::NotFound));
        assert_eq!(spool.delete(wrong).await, Err(AdminError::NotFound));
    }
    assert_eq!(spool.get(a).await.unwrap().unwrap().0.delivery_id(), a);
    // Even while it is being attempted, a wrong tag is not found (not 409).
    let route = route("");
    assert_eq!(
        spool
            .take_due(now_ms(), |_| Some(Arc::clone(&route)))
            .0
            .len(),
        2
    );
    let wrong = DeliveryId {
        number: a.number,
        tag: !a.tag,
    };
    assert_eq!(spool.delete(wrong).await, Err(AdminError::NotFound));
    assert_eq!(spool.delete(a).await, Err(AdminError::InFlight));
}

#[test]
fn records_written_before_tags_read_with_a_zero_tag() {
    let before = r#"{"id":7,"route":"hook","created_ms":1,"window_ms":1,"attempts":0,"window_attempts":0,"next_ms":1,"status":"pending","last_error":null,"last_status":null,"event_id":null,"claim":null,"request_bytes":10,"body_bytes":1}"#;
    let meta = Meta::decode(before.as_bytes()).unwrap();
    assert_eq!(meta.delivery_id(), DeliveryId { number: 7, tag: 0 });
    assert_eq!(meta.shown_id(), "00000000000000070000000000000000");
}

#[tokio::test]
async fn the_budget_refuses_what_does_not_fit_and_frees_what_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let one = request("x").encode().len() as u64 + RECORD_COST;
    let spool = spool(dir.path(), 2 * one);
    let a = spool
        .enqueue("hook", None, None, &request("x"))
        .await
        .unwrap();
    spool
        .enqueue("hook", None, None, &request("y"))
        .await
        .unwrap();
    assert_eq!(
        spool.enqueue("hook", None, None, &request("z")).await,
        Err(Refused::Full)
    );
    spool.delete(a).await.unwrap();
    assert_eq!(spool.used_bytes(), one);
    spool
        .enqueue("hook", None, None, &request("z"))
        .await
        .unwrap();
}

#[tokio::test]
async fn routes_take_what_their_concurrency_and_ordering_allow() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path(), 1 << 20);
    fill(&spool, 4).await;
    let later = now_ms() + 60_000;
    let two = route("retry = { concurrency = 2 }");
    let (taken, _) = spool.take_due(later, |_| Some(Arc::clone(&two)));
    assert_eq!(taken.len(), 2);
    let (more, _) = spool.take_due(later, |_| Some(Arc::clone(&two)));
    assert!(more.is_empty(), "two in flight already");
    // A route that is gone keeps its deliveries.
    assert!(spool.take_due(later, |_| None).0.is_empty());
    // One finishes for a retry in a minute; another is delivered.
    let (mut retried, _) = taken[0].clone();
    retried.next_ms = later + 60_000;
    spool.finish(Finished::Kept(retried.clone())).await;
    spool.finish(Finished::Delivered(taken[1].0.clone())).await;
    let fifo = route("retry = { ordering = \"fifo\", concurrency = 4 }");
    let (head, next) = spool.take_due(later, |_| Some(Arc::clone(&fifo)));
    // fifo: the oldest comes first and waits for its turn; nothing else passes it.
    assert!(head.is_empty(), "{head:?}");
    assert_eq!(next, Some(retried.next_ms));
    let (head, _) = spool.take_due(retried.next_ms, |_| Some(Arc::clone(&fifo)));
    assert_eq!(
        head.iter().map(|(m, _)| m.id).collect::<Vec<_>>(),
        [retried.id]
    );
    assert_eq!(
        spool.list(None, None, 10).await.unwrap().len(),
        3,
        "the delivered one is gone"
    );
}

#[tokio::test]
async fn dead_letters_are_retried_or_deleted_from_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path(), 1 << 20);
    let id = spool
        .enqueue("hook", None, None, &request("x"))
        .await
        .unwrap();
    let route = route("");
    let (taken, _) = spool.take_due(now_ms(), |_| Some(Arc::clone(&route)));
    let mut meta = taken[0].0.clone();
    assert_eq!(spool.retry(id).await, Err(AdminError::InFlight));
    assert_eq!(spool.delete(id).await, Err(AdminError::InFlight));
    meta.status = Status::Dead;
    meta.attempts = 3;
    meta.window_attempts = 3;
    spool.finish(Finished::Kept(meta)).await;
    assert_eq!(
        spool
            .list(None, Some(Status::Dead), 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(spool.depth(now_ms())["hook"].dead, 1);
    let retried = spool.retry(id).await.unwrap();
    assert_eq!(
        (retried.status, retried.attempts, retried.window_attempts),
        (Status::Pending, 3, 0)
    );
    assert_eq!(
        spool
            .take_due(now_ms(), |_| Some(Arc::clone(&route)))
            .0
            .len(),
        1
    );
    let unknown = DeliveryId {
        number: u64::MAX,
        tag: id.tag,
    };
    assert_eq!(spool.retry(unknown).await, Err(AdminError::NotFound));
    drop(spool);
    // The retry was stored: pending after a restart.
    let again = self::spool(dir.path(), 1 << 20);
    assert_eq!(
        again.get(id).await.unwrap().unwrap().0.status,
        Status::Pending
    );
    again.delete(id).await.unwrap();
    assert!(again.get(id).await.unwrap().is_none());
    assert_eq!(again.used_bytes(), 0);
}

/// A store that fails its next commits (as a full disk would, without
/// breaking it), then works.
#[derive(Debug)]
struct Failing {
    inner: Box<dyn Store>,
    commits_to_fail: std::sync::atomic::AtomicUsize,
}

impl Store for Failing {
    fn commit(&self, ops: &[&Op]) -> Result<(), StoreError> {
        let fail = self
            .commits_to_fail
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        match fail {
            Ok(_) => Err(StoreError("no space left".to_owned())),
            Err(_) => self.inner.commit(ops),
        }
    }

    fn broken(&self) -> bool {
        false
    }

    fn metas(&self) -> Result<Vec<Meta>, StoreError> {
        self.inner.metas()
    }

    fn request(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.request(id)
    }
}

/// Makes the next `n` commits of `spool`'s store fail.
fn fail_commits(spool: &Spool, n: usize) {
    let Backend::Local(local) = &spool.0.backend else {
        unreachable!()
    };
    let mut slot = local.store.write().unwrap();
    let inner = slot.store.take().unwrap();
    slot.store = Some(Box::new(Failing {
        inner,
        commits_to_fail: n.into(),
    }));
}

#[tokio::test]
async fn a_delivered_delivery_whose_removal_fails_is_never_due_again() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path(), 1 << 20);
    let id = spool
        .enqueue("hook", None, None, &request("x"))
        .await
        .unwrap();
    let used = spool.used_bytes();
    let route = route("");
    let (taken, _) = spool.take_due(now_ms(), |_| Some(Arc::clone(&route)));
    let mut meta = taken[0].0.clone();
    meta.attempts = 1;
    meta.last_status = Some(200);
    fail_commits(&spool, 3);
    let finishing = tokio::spawn({
        let spool = spool.clone();
        async move { spool.finish(Finished::Delivered(meta)).await }
    });
    // While its removal is tried again, it is still in flight: not sent
    // again, still stored, still in the budget.
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert!(!finishing.is_finished());
    let later = now_ms() + 3_600_000;
    assert!(
        spool
            .take_due(later, |_| Some(Arc::clone(&route)))
            .0
            .is_empty()
    );
    assert_eq!(spool.used_bytes(), used);
    assert_eq!(
        spool.get(id).await.unwrap().map(|(_, busy)| busy),
        Some(true)
    );
    finishing.await.unwrap();
    assert!(spool.get(id).await.unwrap().is_none());
    assert_eq!(spool.used_bytes(), 0);
    drop(spool);
    // Removed for good: nothing comes back after a restart.
    let again = self::spool(dir.path(), 1 << 20);
    assert!(again.list(None, None, 10).await.unwrap().is_empty());
    assert_eq!(again.used_bytes(), 0);
}

#[tokio::test]
async fn a_failed_new_delivery_does_not_fail_the_results_committed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path(), 1 << 20);
    let id = spool
        .enqueue("hook", None, None, &request("x"))
        .await
        .unwrap();
    let meta = spool.get(id).await.unwrap().unwrap().0;
    // One group: a new delivery and a removal. The group fails (once); the
    // removal alone then goes through.
    fail_commits(&spool, 1);
    let (insert, remove) = {
        let mut new = meta.clone();
        new.id += 1;
        (
            vec![Op::Insert(new, request("y").encode())],
            vec![Op::Remove(meta.id)],
        )
    };
    let (a, ra) = oneshot::channel();
    let (b, rb) = oneshot::channel();
    let group = vec![
        Job {
            ops: insert,
            done: a,
        },
        Job {
            ops: remove,
            done: b,
        },
    ];
    let local = spool.local().unwrap();
    for (done, result) in local.commit_group(&spool, group) {
        done.send(result).unwrap();
    }
    assert!(ra.await.unwrap().is_err());
    assert_eq!(rb.await.unwrap(), Ok(()));
    let store_has = local.with_store(&spool, |s| s.metas()).unwrap();
    assert!(store_has.is_empty(), "{store_has:?}");
}

#[test]
fn ids_parse_as_shown() {
    let id = DeliveryId {
        number: 0x0123_4567_89ab_cdef,
        tag: 0xfedc_ba98_7654_3210,
    };
    assert_eq!(id.to_string(), "0123456789abcdeffedcba9876543210");
    assert_eq!(DeliveryId::parse(&id.to_string()), Some(id));
    assert_eq!(
        DeliveryId::parse("0123456789ABCDEFFEDCBA9876543210"),
        Some(id)
    );
    for bad in [
        "",
        "0123456789abcdef",
        "0123456789abcdeffedcba987654321g",
        "0123456789abcdeffedcba98765432100",
        "+123456789abcdeffedcba9876543210",
        "0123456789abcdef+edcba9876543210",
    ] {
        assert_eq!(DeliveryId::parse(bad), None, "{bad}");
    }
}

#[tokio::test]
async fn an_attempt_frees_its_place_while_its_result_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let spool = spool(dir.path(), 1 << 20);
    fill(&spool, 4).await;
    let one = route("retry = { concurrency = 1 }");
    let take = |spool: &Spool, route: &Arc<Route>| -> Vec<u64> {
        let (taken, _) = spool.take_due(now_ms(), |_| Some(Arc::clone(route)));
        taken.iter().map(|(m, _)| m.id).collect()
    };
    let first = spool.take_due(now_ms(), |_| Some(Arc::clone(&one))).0;
    assert_eq!(first.len(), 1);
    fail_commits(&spool, 3);
    let delivered = |meta: &Meta| {
        let mut meta = meta.clone();
        meta.attempts = 1;
        meta.last_status = Some(200);
        let spool = spool.clone();
        tokio::spawn(async move { spool.finish(Finished::Delivered(meta)).await })
    };
    let recording = delivered(&first[0].0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!recording.is_finished(), "its removal is tried again");
    // The app has answered: the next attempt need not wait for the store.
    let second = spool.take_due(now_ms(), |_| Some(Arc::clone(&one))).0;
    assert_eq!(second.len(), 1);
    assert_ne!(second[0].0.id, first[0].0.id, "the first is not sent again");
    let also = delivered(&second[0].0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Two between their attempt and its record: twice `concurrency`.
    assert!(
        take(&spool, &one).is_empty(),
        "no third while two are unrecorded"
    );
    recording.await.unwrap();
    also.await.unwrap();
    assert_eq!(take(&spool, &one).len(), 1, "room again once recorded");
    // fifo: the next attempt waits for the result to be recorded.
    let dir = tempfile::tempdir().unwrap();
    let spool = self::spool(dir.path(), 1 << 20);
    fill(&spool, 2).await;
    let fifo = route("retry = { ordering = \"fifo\" }");
    let head = spool.take_due(now_ms(), |_| Some(Arc::clone(&fifo))).0;
    fail_commits(&spool, 2);
    let mut meta = head[0].0.clone();
    meta.last_status = Some(200);
    let finishing = tokio::spawn({
        let spool = spool.clone();
        async move { spool.finish(Finished::Delivered(meta)).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!finishing.is_finished());
    assert!(take(&spool, &fifo).is_empty(), "fifo waits for the record");
    finishing.await.unwrap();
    assert_eq!(take(&spool, &fifo).len(), 1);
}
