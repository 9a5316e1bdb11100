//! Sync threads: a durable restore (and an in-place recover) hands each
//! staged file to these threads, which make it durable (and rename it into
//! place), so the restoring threads decode the next file while the disk
//! writes this one, and several fsyncs share a journal commit.

use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::{Scope, ScopedJoinHandle};

use crate::error::{Result, StoreError};
use crate::snapshot::Progress;

/// A file's index in its plan and what became of it: bytes written, or
/// why it was not restored.
pub(crate) type Outcome = (usize, std::result::Result<u64, String>);

/// What a sync thread does with a staged file: make it durable, and
/// whatever must follow (a rename into place); the bytes it holds.
pub(crate) trait Completion: Send {
    fn complete(self) -> Result<u64>;
}

/// Sync threads: fsyncs are waits on the disk, and several at once let it
/// write while the restoring threads compute.
const SYNC_THREADS: usize = 8;

/// Staged files waiting for a sync thread; a restoring thread that finds
/// the queue full waits, which bounds the files held open.
const SYNCS_QUEUED: usize = 32;

/// Threads that complete staged files of type `J`, reporting each one
/// done to `progress` once completed.
pub(crate) struct SyncThreads<'scope, J> {
    queue: SyncSender<(usize, J)>,
    progress: &'scope dyn Progress,
    threads: Vec<ScopedJoinHandle<'scope, Vec<Outcome>>>,
}

impl<'scope, J: Completion + 'scope> SyncThreads<'scope, J> {
    /// Starts the threads in `scope`.
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        progress: &'scope dyn Progress,
    ) -> Result<Self> {
        let (queue, jobs) = sync_channel::<(usize, J)>(SYNCS_QUEUED);
        let jobs = Arc::new(Mutex::new(jobs));
        let threads = (0..SYNC_THREADS)
            .map(|n| {
                let jobs = jobs.clone();
                std::thread::Builder::new()
                    .name(format!("cairn-sync-{n}"))
                    .spawn_scoped(scope, move || {
                        let mut done = Vec::new();
                        // The lock is held only to take the next file.
                        while let Ok((i, job)) = {
                            let next = jobs.lock().map(|jobs| jobs.recv());
                            next.unwrap_or(Err(std::sync::mpsc::RecvError))
                        } {
                            done.push((i, job.complete().map_err(|e| e.to_string())));
                            progress.file_done();
                        }
                        done
                    })
                    .map_err(|e| StoreError::Usage(format!("cannot start sync threads: {e}")))
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            queue,
            progress,
            threads,
        })
    }

    /// Queues staged file `i`; its outcome comes from [`Self::finish`].
    pub fn send(&self, i: usize, job: J) -> Option<Outcome> {
        match self.queue.send((i, job)) {
            Ok(()) => None,
            // Only when every sync thread is gone (which the threads never
            // do while the queue is open): the file is completed here.
            Err(back) => {
                let (i, job) = back.0;
                let outcome = (i, job.complete().map_err(|e| e.to_string()));
                self.progress.file_done();
                Some(outcome)
            }
        }
    }

    /// Waits for every queued file and adds the outcomes to `outcomes`,
    /// then an error for each of the `files` that has none (a thread that
    /// panicked loses its outcomes: those files are not restored).
    pub fn finish(self, outcomes: &mut Vec<Outcome>, files: usize) {
        drop(self.queue);
        for t in self.threads {
            if let Ok(done) = t.join() {
                outcomes.extend(done);
            }
        }
        let mut seen = vec![false; files];
        for (i, _) in outcomes.iter() {
            seen[*i] = true;
        }
        outcomes.extend(
            (0..files)
                .filter(|&i| !seen[i])
                .map(|i| (i, Err("its fsync did not finish".to_string()))),
        );
    }
}
