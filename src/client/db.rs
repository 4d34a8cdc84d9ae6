//! The store thread: owns a client's [`Store`] and runs every store operation of a running
//! client, so no SQLite call ever runs on an async worker or on the desktop's main thread.
//!
//! [`StoreHandle::call`] sends a closure to the thread and awaits its result. Jobs run in the
//! order sent (one connection: the outbox and the message history stay consistent without
//! locks across awaits). The one long operation, merging the search index (about 1 s per
//! million messages), is not done inside the write that makes it due: the thread does it in
//! small steps ([`Store::merge_step`]) whenever no job is waiting, so a send or an arriving
//! message waits for one step at most.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use tokio::sync::oneshot;

use crate::client::store::{self, Store, StoreError};

type Job = Box<dyn FnOnce(&Store) + Send>;

enum Msg {
    Run(Job),
    /// Close the store's file (checkpointing the WAL) and end the thread.
    Close(oneshot::Sender<()>),
}

/// Counters of the store thread, for tests and measurements (see [`StoreHandle::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Jobs run (each one or a few queries).
    pub jobs: u64,
    /// Full conversation-list reads.
    pub full_lists: u64,
    /// Single conversation-summary reads.
    pub summaries: u64,
    /// Steps of merging the search index.
    pub merge_steps: u64,
}

#[derive(Default)]
struct Counters {
    jobs: AtomicU64,
    merge_steps: AtomicU64,
}

/// An async handle to a store running on its own thread. Cheap to clone.
#[derive(Clone)]
pub struct StoreHandle {
    tx: mpsc::Sender<Msg>,
    counters: Arc<Counters>,
    store: Arc<Store>,
    path: PathBuf,
}

impl StoreHandle {
    /// Opens the store at `path` (integrity check and migrations, which can take a while on a
    /// large file) on a new thread, and keeps it there.
    pub async fn open(path: &Path) -> store::Result<StoreHandle> {
        Self::open_tuned(path, |_| {}).await
    }

    /// [`StoreHandle::open`], with `tune` applied to the store first (tests lower its limits).
    pub(crate) async fn open_tuned(
        path: &Path,
        tune: impl FnOnce(&mut Store) + Send + 'static,
    ) -> store::Result<StoreHandle> {
        let path = path.to_path_buf();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (tx, rx) = mpsc::channel::<Msg>();
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        let open_path = path.clone();
        std::thread::Builder::new()
            .name("natter-store".into())
            .spawn(move || match Store::open(&open_path) {
                Ok(mut store) => {
                    tune(&mut store);
                    let store = Arc::new(store);
                    store.set_background_merge();
                    if ready_tx.send(Ok(store.clone())).is_ok() {
                        serve(&store, &rx, &thread_counters);
                    }
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            })?;
        let store = ready_rx.await.map_err(|_| StoreError::Closed)??;
        Ok(StoreHandle {
            tx,
            counters,
            store,
            path,
        })
    }

    /// Runs `f` on the store thread and returns what it returns. Fails
    /// [`StoreError::Closed`] once the store was closed.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> store::Result<T> + Send + 'static,
    ) -> store::Result<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |store| {
            // The caller may have gone (a cancelled command): nobody is left to tell.
            let _ = tx.send(f(store));
        });
        self.tx
            .send(Msg::Run(job))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Closes the file once the jobs sent before this have run; later calls fail `Closed`.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Where the store's file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn stats(&self) -> StoreStats {
        let (full_lists, summaries) = self.store.summary_reads();
        StoreStats {
            jobs: self.counters.jobs.load(Ordering::Relaxed),
            full_lists,
            summaries,
            merge_steps: self.counters.merge_steps.load(Ordering::Relaxed),
        }
    }
}

/// The thread's loop: jobs first, merge steps when idle, until closed or every handle is gone.
fn serve(store: &Store, rx: &mpsc::Receiver<Msg>, counters: &Counters) {
    let mut merging = false;
    loop {
        let msg = if merging {
            match rx.try_recv() {
                Ok(msg) => Some(msg),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(msg) => Some(msg),
                Err(_) => break,
            }
        };
        match msg {
            Some(Msg::Run(job)) => {
                counters.jobs.fetch_add(1, Ordering::Relaxed);
                job(store);
            }
            Some(Msg::Close(ack)) => {
                store.close();
                let _ = ack.send(());
                return;
            }
            None => {
                counters.merge_steps.fetch_add(1, Ordering::Relaxed);
                merging = match store.merge_step(store.merge_step_pages) {
                    Ok(more) => more,
                    Err(e) => {
                        // The messages are stored; the index stays as FTS5 left it and the next
                        // write that makes a merge due starts again.
                        tracing::warn!("local store: merging the search index failed: {e}");
                        false
                    }
                };
            }
        }
        merging |= store.take_merge_due();
    }
    store.close();
}
