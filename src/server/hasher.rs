//! The argon2 worker pool: every password hash and check the server does runs here.
//!
//! argon2id is memory-hard: each hash fills about 19 MiB. Run on `spawn_blocking`, every hash
//! allocated and freed its own buffer, and glibc did not give that memory back: the first
//! 19 MiB buffer is mmapped, freeing it raises the dynamic mmap threshold to 19 MiB, so later
//! buffers come from the (per-thread) malloc arenas of the blocking pool's threads, whose freed
//! memory stays resident (300 registrations left the server at ~640 MiB for minutes). Here a
//! fixed set of worker threads each own ONE buffer, allocated on first use and reused for every
//! job, so argon2 memory is bounded by design at `workers` x 19 MiB whatever the load.
//!
//! Jobs wait in a bounded queue; when it is full [`Hasher::run`] answers [`Busy`] at once (the
//! HTTP layer turns that into 503 + `Retry-After`), so a burst cannot pile up unbounded work.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;

/// Largest argon2 memory (in 1 KiB blocks) a stored hash may ask for: hashes this server wrote
/// use the crate default (19 MiB); a bigger one is treated as not matching rather than letting a
/// worker's buffer grow without bound.
const MAX_BLOCKS: usize = 256 * 1024;

/// The queue is full (or the pool has stopped): try again shortly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the server is busy checking passwords")]
pub struct Busy;

type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// Handle to the worker threads; they stop when it is dropped.
pub struct Hasher {
    jobs: SyncSender<Job>,
}

impl Hasher {
    /// Start `workers` threads (at least one) behind a queue of `queue` waiting jobs.
    pub fn start(workers: usize, queue: usize) -> std::io::Result<Hasher> {
        let (jobs, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("natter-argon2-{i}"))
                .spawn(move || work(&rx))?;
        }
        Ok(Hasher { jobs })
    }

    /// Run `job` on a worker, or [`Busy`] at once if the queue is full.
    pub async fn run<T, F>(&self, job: F) -> Result<T, Busy>
    where
        T: Send + 'static,
        F: FnOnce(&mut Worker) -> T + Send + 'static,
    {
        self.submit(job)?.await.map_err(|_| Busy)
    }

    /// Queue `job` without waiting: the receiver gets its result.
    fn submit<T, F>(&self, job: F) -> Result<tokio::sync::oneshot::Receiver<T>, Busy>
    where
        T: Send + 'static,
        F: FnOnce(&mut Worker) -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |worker| {
            // The requester may have gone (client disconnected): nothing to tell then.
            let _ = tx.send(job(worker));
        });
        match self.jobs.try_send(job) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => Err(Busy),
        }
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    let mut worker = Worker { blocks: Vec::new() };
    loop {
        // Hold the lock only while taking a job, not while running it.
        let job = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        job(&mut worker);
    }
}

/// One worker thread's reusable argon2 memory.
pub struct Worker {
    blocks: Vec<Block>,
}

impl Worker {
    /// The buffer, grown (once, normally) to `count` blocks.
    fn memory(&mut self, count: usize) -> &mut [Block] {
        if self.blocks.len() < count {
            self.blocks = vec![Block::default(); count];
        }
        &mut self.blocks[..count]
    }

    /// Hash a password with argon2id (the crate's default parameters) and a fresh random salt,
    /// as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), the same format and
    /// parameters as `argon2::Argon2::default().hash_password`, so stored hashes of either kind
    /// verify with either.
    pub fn hash(&mut self, password: &str) -> Result<String, argon2::password_hash::Error> {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let params = Params::default();
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let blocks = params.block_count();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password_into_with_memory(
                password.as_bytes(),
                &salt,
                &mut out,
                self.memory(blocks),
            )?;
        let salt = SaltString::encode_b64(&salt)?;
        Ok(PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out)?),
        }
        .to_string())
    }

    /// Whether `password` matches a stored PHC hash: recompute with its algorithm, version,
    /// parameters and salt, and compare in constant time. A malformed stored hash never matches.
    pub fn verify(&mut self, password: &str, stored: &str) -> bool {
        self.try_verify(password, stored).unwrap_or(false)
    }

    fn try_verify(
        &mut self,
        password: &str,
        stored: &str,
    ) -> Result<bool, argon2::password_hash::Error> {
        use argon2::password_hash::Error;
        let parsed = PasswordHash::new(stored)?;
        let algorithm = Algorithm::try_from(parsed.algorithm)?;
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()?
            .unwrap_or_default();
        let params = Params::try_from(&parsed)?;
        let expected = parsed.hash.ok_or(Error::Password)?;
        let mut salt = [0u8; 64];
        let salt = parsed.salt.ok_or(Error::Password)?.decode_b64(&mut salt)?;
        let blocks = params.block_count();
        if blocks > MAX_BLOCKS {
            return Err(Error::ParamValueInvalid(
                argon2::password_hash::errors::InvalidValue::TooLong,
            ));
        }
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            self.memory(blocks),
        )?;
        // Output's equality is constant-time.
        Ok(Output::new(&out)? == expected)
    }

    /// Check `password` against a fixed hash and answer false: a login for a missing user costs
    /// as much as one with a wrong password (no user enumeration by timing).
    pub fn verify_dummy(&mut self, password: &str) -> bool {
        static DUMMY: OnceLock<String> = OnceLock::new();
        let dummy = match DUMMY.get() {
            Some(d) => d,
            None => {
                let made = self.hash("natter-dummy-password").unwrap_or_default();
                DUMMY.get_or_init(|| made)
            }
        };
        let _ = self.verify(password, dummy);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    fn worker() -> Worker {
        Worker { blocks: Vec::new() }
    }

    #[test]
    fn hashes_verify_only_when_equal() {
        let mut w = worker();
        let stored = w.hash("correct horse").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(w.verify("correct horse", &stored));
        assert!(!w.verify("correct hors", &stored));
        assert!(!w.verify("correct horse", "not a phc string"));
        assert!(!w.verify_dummy("correct horse"));
    }

    /// Hashes stored before the pool (written by `Argon2::default().hash_password`) still verify,
    /// and the pool's hashes verify with the crate's own verifier: the stored format is the same.
    #[test]
    fn compatible_with_the_crate_hasher() {
        let mut w = worker();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let old = Argon2::default()
            .hash_password(b"hunter2 hunter2", &salt)
            .unwrap()
            .to_string();
        assert!(w.verify("hunter2 hunter2", &old));
        assert!(!w.verify("hunter2 hunter3", &old));
        let new = w.hash("hunter2 hunter2").unwrap();
        let parsed = PasswordHash::new(&new).unwrap();
        assert!(Argon2::default()
            .verify_password(b"hunter2 hunter2", &parsed)
            .is_ok());
    }

    /// A stored hash demanding more memory than the cap does not match (nor grow the buffer).
    #[test]
    fn oversized_stored_parameters_do_not_match() {
        let mut w = worker();
        let params = Params::new(1024 * 1024, 1, 1, None).unwrap();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let stored = format!(
            "$argon2id$v=19${}${}$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            ParamsString::try_from(&params).unwrap(),
            salt.as_str()
        );
        assert!(!w.verify("anything at all", &stored));
        assert!(w.blocks.is_empty());
    }

    /// With one worker held busy and a queue of one, a third job is refused at once; once the
    /// worker is free, both queued jobs complete and the pool takes work again.
    #[tokio::test]
    async fn a_full_queue_answers_busy() {
        let hasher = Hasher::start(1, 1).unwrap();
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let first = hasher
            .submit(move |_| {
                let _ = started_tx.send(());
                let _ = hold_rx.recv();
                1
            })
            .unwrap();
        started_rx.await.unwrap();
        let second = hasher.submit(|_| 2).expect("one job fits in the queue");
        assert_eq!(hasher.submit(|_| 3).err(), Some(Busy));
        hold_tx.send(()).unwrap();
        assert_eq!(first.await.unwrap(), 1);
        assert_eq!(second.await.unwrap(), 2);
        assert_eq!(hasher.run(|_| 4).await, Ok(4), "free again once drained");
    }
}
