//! Password checks. Security rules:
//! - Hashes are argon2id PHC strings with at least OWASP's minimum (m ≥ 19 MiB, t ≥ 2, p = 1);
//!   the config check refuses weaker ones.
//! - Checks run on the gateway's own password threads (half the cores, at least one) at the
//!   lowest CPU priority (nice 19), behind a semaphore: a login flood can neither block request
//!   workers nor take CPU time they want — argon2 gets what the proxy leaves idle.
//! - An unknown user (or one without a password) is checked against a dummy hash made at
//!   start-up with the same parameters: status, body and timing do not say which usernames exist.
//! - Passwords are taken as typed (any length up to 1 KiB, no trimming) and never logged.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::{Semaphore, oneshot};

pub const MIN_M_KIB: u32 = 19 * 1024;
pub const MIN_T: u32 = 2;
/// Longest password accepted (longer ones are refused without hashing: a CPU-time guard).
pub const MAX_PASSWORD: usize = 1024;

fn argon2() -> Argon2<'static> {
    // The parameters here only matter for new hashes; verification reads them from the hash.
    let params = Params::new(MIN_M_KIB, MIN_T, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password with argon2id at OWASP's minimum parameters and a random salt.
pub fn hash(password: &str) -> Result<String, String> {
    let mut salt_bytes = [0u8; 16];
    crate::session::token::random_bytes(&mut salt_bytes).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks that `phc` is an argon2id hash at least as strong as the minimum.
pub fn validate(phc: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(phc).map_err(|e| format!("not a PHC string: {e}"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(format!("algorithm is {}, expected argon2id", parsed.algorithm));
    }
    let params = Params::try_from(&parsed).map_err(|e| format!("invalid argon2 parameters: {e}"))?;
    if params.m_cost() < MIN_M_KIB || params.t_cost() < MIN_T || params.p_cost() != 1 {
        return Err(format!(
            "parameters m={},t={},p={} are below the minimum m={MIN_M_KIB},t={MIN_T},p=1 (use portcullis hash-password)",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    Ok(())
}

type Job = Box<dyn FnOnce() + Send>;

/// Verifies passwords off the request workers, a bounded number at a time, on threads of
/// their own that only get CPU time the workers leave.
pub struct Passwords {
    dummy: Arc<String>,
    permits: Arc<Semaphore>,
    jobs: Mutex<mpsc::Sender<Job>>,
}

/// Lowers the calling thread's CPU priority as far as it goes. Only on Linux, where nice is
/// per thread; elsewhere it would lower the whole process, workers included.
#[cfg(target_os = "linux")]
fn lowest_priority() {
    // SAFETY: setpriority only reads its arguments; `0` names the calling thread.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    if rc != 0 {
        tracing::debug!("could not lower the password threads' priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lowest_priority() {}

impl Passwords {
    /// `threads` password threads (at least one); they end when this is dropped.
    pub fn new(threads: usize) -> Result<Passwords, String> {
        let dummy = hash("portcullis-dummy-password-for-unknown-users")?;
        let threads = threads.max(1);
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("passwords-{i}"))
                .spawn(move || {
                    lowest_priority();
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| format!("cannot start a password thread: {e}"))?;
        }
        Ok(Passwords {
            dummy: Arc::new(dummy),
            permits: Arc::new(Semaphore::new(threads)),
            jobs: Mutex::new(tx),
        })
    }

    /// Whether `password` matches `stored` (`None`: unknown user — checked against the dummy
    /// anyway, and false).
    pub async fn check(&self, stored: Option<&str>, password: &str) -> bool {
        if password.len() > MAX_PASSWORD {
            return false;
        }
        // The permit travels with the job: a caller that gives up does not free a slot while
        // its check still runs, so abandoned checks cannot pile up behind the permits.
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return false;
        };
        let known = stored.is_some();
        let hash = stored.map_or_else(|| self.dummy.as_str().to_string(), str::to_string);
        let password = password.to_string();
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            if done.is_closed() {
                return;
            }
            let ok = PasswordHash::new(&hash)
                .map(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
                .unwrap_or(false);
            let _ = done.send(ok);
        });
        let sent = match self.jobs.lock() {
            Ok(jobs) => jobs.send(job).is_ok(),
            Err(_) => false,
        };
        sent && result.await.unwrap_or(false) && known
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_validate_and_weak_ones_do_not() {
        let h = hash("correct horse").unwrap();
        assert!(validate(&h).is_ok(), "{h}");
        let weak = "$argon2id$v=19$m=4096,t=1,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
        assert!(validate(weak).unwrap_err().contains("below the minimum"));
        assert!(validate("$2b$12$abcdefghijklmnopqrstuv").is_err());
        assert!(validate("plaintext").is_err());
    }

    #[tokio::test]
    async fn long_passwords_are_taken_as_typed() {
        let long = "x".repeat(100) + " with spaces ";
        let h = hash(&long).unwrap();
        let p = Passwords::new(2).unwrap();
        assert!(p.check(Some(&h), &long).await);
        assert!(!p.check(Some(&h), long.trim()).await);
        assert!(!p.check(None, &long).await, "unknown users never pass");
    }
}
