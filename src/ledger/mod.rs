//! Commands applied to the ledger: load the state they touch (locked), decide with
//! [`crate::domain`], then append the events and write the projections in one transaction.

pub mod details;
mod error;
pub mod orders;
pub mod restore;
pub mod rows;
pub mod runway;
pub mod tasks;

use crate::configuration::Config;
use crate::domain::Draft;
use crate::store::{self, truncate_to_micros, Appended, Metadata, NewEvent, StoreError};
use chrono::Utc;
use deadpool_postgres::{Object, Pool, Transaction};
use projections::events::Event;
use projections::ids::{InstanceId, TaskId};
use projections::Projection;
use std::future::Future;

pub use error::{CommandError, LedgerError, Retryable};

/// Rounds of re-locking when task bindings move under a command's feet; each round needs a
/// concurrent rebind to have committed in between, so a handful is plenty.
const ROUNDS_MAX: usize = 8;

/// Attempts of one command, at most, when it keeps losing races to concurrent writers. Races
/// are rare (writers lock the rows they change, in id order), and each lost one means a
/// competitor committed, so a few attempts always suffice in practice; more would only hold a
/// request longer behind a real fault.
pub const ATTEMPTS_MAX: u32 = 5;

/// The pause before the second attempt, doubled before each later one (5, 10, 20, 40 ms: 75 ms
/// in all). A deadlock's survivor or an append's winner commits within a few milliseconds; the
/// pause lets it, so that the retry finds its rows committed instead of racing it again.
pub const BACKOFF_MS_BASE: u64 = 5;

/// What every command needs: the database and whether announced events are queued for webhooks.
#[derive(Clone)]
pub struct Ledger {
    pub pool: Pool,
    /// A webhook receiver is configured, so every announced event ([`Event::is_announced`]) is
    /// queued in the outbox with it; without a receiver nothing would ever drain the outbox.
    queue_announced: bool,
}

impl Ledger {
    pub fn new(pool: Pool, config: &Config) -> Ledger {
        Ledger {
            pool,
            queue_announced: config.webhook.is_some(),
        }
    }
}

/// One transaction: the rows it loaded, the draft the decision works on, and its metadata.
pub struct UnitOfWork<'a> {
    tx: Transaction<'a>,
    pub draft: Draft,
    /// The rows as loaded, so that only changed ones are written back.
    loaded: Projection,
    /// `(first event index, metadata)`: events from that index on carry that metadata (a batch
    /// holds the events of several requests).
    metadata: Vec<(usize, std::sync::Arc<serde_json::Value>)>,
    /// `(event index, key)`, in index order: the idempotency keys of decided events that the
    /// command built already ([`Self::carry_key`]), so that the commit need not derive them again.
    carried_keys: Vec<(usize, String)>,
    queue_announced: bool,
}

impl<'a> UnitOfWork<'a> {
    async fn begin(
        client: &'a mut Object,
        ledger: &Ledger,
        metadata: &Metadata,
    ) -> Result<UnitOfWork<'a>, LedgerError> {
        let tx = client.transaction().await?;
        Ok(UnitOfWork {
            tx,
            draft: Draft::new(Projection::default(), truncate_to_micros(Utc::now())),
            loaded: Projection::default(),
            metadata: vec![(0, metadata.to_value())],
            carried_keys: Vec::new(),
            queue_announced: ledger.queue_announced,
        })
    }

    /// Events decided from now on carry `metadata`.
    pub fn set_metadata(&mut self, metadata: &Metadata) {
        self.metadata
            .push((self.draft.events.len(), metadata.to_value()));
    }

    pub fn tx(&self) -> &Transaction<'a> {
        &self.tx
    }

    /// Loads and locks packages; absent ones are simply not loaded.
    pub async fn lock_packages(&mut self, ids: &[&InstanceId]) -> Result<(), LedgerError> {
        let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        let rows = rows::lock_packages(&self.tx, &ids).await?;
        self.add_packages(&rows)
    }

    /// Locks the packages the given tasks are bound to and loads those tasks. Tasks whose
    /// binding moved between the two reads get their new package locked too.
    ///
    /// The other tasks of these packages are not loaded: only a package that runs dry needs them
    /// (to stop them), and [`Self::load_running_tasks_of`] fetches them for that one.
    pub async fn lock_packages_of_tasks(
        &mut self,
        task_ids: &[&TaskId],
    ) -> Result<(), LedgerError> {
        let ids: Vec<&str> = task_ids.iter().map(|id| id.as_str()).collect();
        let mut packages = rows::lock_packages_of_tasks(&self.tx, &ids).await?;
        // A rebind that committed in between moves a task to a package not locked yet; bounded
        // because each round locks at least one more package.
        for _ in 0..ROUNDS_MAX {
            self.add_packages(&packages)?;
            let tasks = rows::read_tasks(&self.tx, &ids).await?;
            self.add_tasks(&tasks)?;
            let moved: Vec<InstanceId> = task_ids
                .iter()
                .filter_map(|id| self.draft.projection.tasks.get(*id))
                .map(|task| task.instance_id.clone())
                .filter(|instance| !self.draft.projection.packages.contains_key(instance))
                .collect();
            if moved.is_empty() {
                return Ok(());
            }
            let moved: Vec<&str> = moved.iter().map(InstanceId::as_str).collect();
            packages = rows::lock_packages(&self.tx, &moved).await?;
        }
        Err(LedgerError::Store(StoreError::ConcurrentAppend))
    }

    /// Loads the running tasks of these (locked) packages that are not loaded yet; returns
    /// whether there were any. Loaded rows go into the state the draft starts from: call
    /// [`Self::restart_draft`] before deciding again.
    pub async fn load_running_tasks_of(
        &mut self,
        ids: &[&InstanceId],
    ) -> Result<bool, LedgerError> {
        let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        let mut found = false;
        for row in rows::running_tasks_of(&self.tx, &ids).await? {
            let task = rows::task_from_row(&row)?;
            if !self.loaded.tasks.contains_key(&task.task_id) {
                found = true;
                self.loaded.tasks.insert(task.task_id.clone(), task);
            }
        }
        Ok(found)
    }

    /// Forgets every decision so far: the draft starts again from the rows as loaded.
    pub fn restart_draft(&mut self) {
        self.draft = Draft::new(self.loaded.clone(), self.draft.now);
        self.metadata.truncate(1);
        self.carried_keys.clear();
    }

    /// Hands over the idempotency key of the decided event at `index`, which the command built
    /// to look its input up: the commit records it instead of deriving it from the event again.
    /// Keys are carried in index order; `key` must be the one the event derives.
    pub fn carry_key(&mut self, index: usize, key: String) {
        if cfg!(debug_assertions) {
            let last = self.carried_keys.last().map(|(last, _)| *last);
            assert!(
                last.is_none_or(|last| last < index),
                "keys come in event order"
            );
            let derived = self
                .draft
                .events
                .get(index)
                .and_then(Event::idempotency_key);
            assert_eq!(derived.as_ref(), Some(&key), "a carried key is its event's");
        }
        self.carried_keys.push((index, key));
    }

    fn add_packages(&mut self, rows: &[tokio_postgres::Row]) -> Result<(), LedgerError> {
        for row in rows {
            let package = rows::package_from_row(row)?;
            self.loaded
                .packages
                .insert(package.instance_id.clone(), package.clone());
            self.draft
                .projection
                .packages
                .insert(package.instance_id.clone(), package);
        }
        Ok(())
    }

    /// Locks the package `task_id` is bound to (and `also`, if given), in id order, and loads the
    /// task. Returns the package it is bound to, or `None` for an unknown task. A binding that
    /// moves while the locks are taken is retried.
    pub async fn lock_task(
        &mut self,
        task_id: &TaskId,
        also: Option<&InstanceId>,
    ) -> Result<Option<InstanceId>, LedgerError> {
        for _ in 0..ROUNDS_MAX {
            self.load_tasks(&[task_id]).await?;
            let Some(task) = self.draft.task(task_id) else {
                return Ok(None);
            };
            let bound = task.instance_id.clone();
            let mut wanted = vec![&bound];
            wanted.extend(also);
            self.lock_packages(&wanted).await?;
            self.load_tasks(&[task_id]).await?;
            if self.draft.task(task_id).map(|t| &t.instance_id) == Some(&bound) {
                return Ok(Some(bound));
            }
        }
        Err(LedgerError::Store(StoreError::ConcurrentAppend))
    }

    /// Serialises the creation of a package that may not exist yet: there is no row to lock.
    pub async fn lock_for_creation(&mut self, id: &InstanceId) -> Result<(), LedgerError> {
        let statement = self
            .tx
            .prepare_cached("SELECT pg_advisory_xact_lock(hashtextextended('package/' || $1, 0))")
            .await?;
        self.tx.execute(&statement, &[&id.as_str()]).await?;
        Ok(())
    }

    /// Loads the tasks bound to these packages that are not destroyed (lock the packages first:
    /// a task's row only changes under its package's lock).
    pub async fn load_live_tasks_of(&mut self, ids: &[&InstanceId]) -> Result<(), LedgerError> {
        let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        let rows = rows::live_tasks_of(&self.tx, &ids).await?;
        self.add_tasks(&rows)
    }

    pub async fn load_tasks(&mut self, ids: &[&TaskId]) -> Result<(), LedgerError> {
        let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
        let rows = rows::read_tasks(&self.tx, &ids).await?;
        self.add_tasks(&rows)
    }

    fn add_tasks(&mut self, rows: &[tokio_postgres::Row]) -> Result<(), LedgerError> {
        for row in rows {
            let task = rows::task_from_row(row)?;
            self.loaded.tasks.insert(task.task_id.clone(), task.clone());
            self.draft
                .projection
                .tasks
                .insert(task.task_id.clone(), task);
        }
        Ok(())
    }

    /// The event recorded earlier under `key`, if any.
    pub async fn earlier_event(&self, key: &str) -> Result<Option<Event>, LedgerError> {
        Ok(self.earlier_events(&[key]).await?.remove(key))
    }

    /// The events recorded earlier under any of `keys`, by key.
    pub async fn earlier_events(
        &self,
        keys: &[&str],
    ) -> Result<std::collections::HashMap<String, Event>, LedgerError> {
        let mut found = std::collections::HashMap::new();
        for recorded in store::by_idempotency_keys(&self.tx, keys).await? {
            let event = recorded.decode()?;
            let key = recorded.answered_key(Some(&event));
            if let Some(key) = key.filter(|key| keys.contains(&key.as_str())) {
                found.insert(key, event);
            }
        }
        Ok(found)
    }

    /// Writes the changed projection rows, appends the decided events (with the outbox entries
    /// of announced ones) and commits.
    async fn commit(self) -> Result<Option<Appended>, LedgerError> {
        let UnitOfWork {
            tx,
            draft,
            loaded,
            metadata,
            carried_keys,
            queue_announced,
        } = self;
        if draft.events.is_empty() {
            tx.commit().await?;
            return Ok(None);
        }
        let (new_packages, changed_packages) =
            new_and_changed(draft.projection.packages.values(), |package| {
                loaded.packages.get(&package.instance_id)
            });
        let (new_tasks, changed_tasks) = new_and_changed(draft.projection.tasks.values(), |task| {
            loaded.tasks.get(&task.task_id)
        });
        let (events, announced) = new_events(&draft, &metadata, carried_keys, queue_announced);
        let types = crate::metrics::count_types(events.iter().map(|e| e.event_type.as_str()));
        // Independent statements on one connection are pipelined: the projection writes and the
        // stream-head reads cost one round trip, not five.
        let (packages_new, packages_changed, tasks_new, tasks_changed, prepared) = tokio::join!(
            rows::insert_packages(&tx, &new_packages),
            rows::update_packages(&tx, &changed_packages),
            rows::insert_tasks(&tx, &new_tasks),
            rows::update_tasks(&tx, &changed_tasks),
            store::prepare(&tx, events, draft.now),
        );
        let failed = [packages_new, packages_changed, tasks_new, tasks_changed]
            .into_iter()
            .filter_map(|written| written.err().map(StoreError::from));
        let prepared = match prepared {
            Ok(prepared) => match store::first_cause(failed) {
                None => prepared,
                Some(error) => return Err(LedgerError::Store(error)),
            },
            Err(error) => {
                let cause = store::first_cause(failed.chain(std::iter::once(error)));
                return Err(LedgerError::Store(cause.expect("one error at least")));
            }
        };
        let appended = store::write(&tx, prepared).await?;
        if appended.recorded_at != draft.now {
            rewrite_refolded(&tx, &draft, &loaded, appended.recorded_at).await?;
        }
        if !announced.is_empty() {
            let entries: Vec<(i64, &str)> = announced
                .iter()
                .map(|(offset, subject)| (appended.first_position + offset, subject.as_str()))
                .collect();
            crate::outbox::enqueue(&tx, &entries).await?;
        }
        tx.commit().await?;
        crate::metrics::appended(&types, appended.last_position);
        Ok(Some(appended))
    }
}

/// The rows of `now` that `before` does not have (to insert) and those it has otherwise (to
/// update); unchanged rows are not written back.
fn new_and_changed<'a, 'b, T: PartialEq + 'b>(
    now: impl Iterator<Item = &'a T>,
    before: impl Fn(&'a T) -> Option<&'b T>,
) -> (Vec<&'a T>, Vec<&'a T>) {
    let mut new = Vec::new();
    let mut changed = Vec::new();
    for row in now {
        match before(row) {
            None => new.push(row),
            Some(before) if before != row => changed.push(row),
            Some(_) => {}
        }
    }
    (new, changed)
}

/// The decided events as the store takes them, each with the metadata of the request it answers
/// and its idempotency key (carried, or derived here), and the offsets and streams of those
/// queued for webhooks.
fn new_events(
    draft: &Draft,
    metadata: &[(usize, std::sync::Arc<serde_json::Value>)],
    carried_keys: Vec<(usize, String)>,
    queue_announced: bool,
) -> (Vec<NewEvent>, Vec<(i64, String)>) {
    let mut carried = carried_keys.into_iter().peekable();
    let mut runs = metadata.iter().peekable();
    let mut current = &metadata[0].1;
    let mut announced = Vec::new();
    let mut events = Vec::with_capacity(draft.events.len());
    for (index, event) in draft.events.iter().enumerate() {
        while let Some((start, value)) = runs.peek() {
            if *start > index {
                break;
            }
            current = value;
            runs.next();
        }
        let new = NewEvent::new(event, current);
        if queue_announced && event.is_announced() {
            announced.push((index as i64, new.stream_id.clone()));
        }
        let key = match carried.next_if(|(carried, _)| *carried == index) {
            Some((_, key)) => Some(key),
            None => event.idempotency_key(),
        };
        events.push(match key {
            Some(key) => new.with_idempotency_key(key),
            None => new,
        });
    }
    (events, announced)
}

/// Writes the command's rows again, folded with the time the events carry.
async fn rewrite_refolded(
    tx: &Transaction<'_>,
    draft: &Draft,
    loaded: &Projection,
    recorded_at: chrono::DateTime<Utc>,
) -> Result<(), LedgerError> {
    // Another append (another lane, another process) took a later time first: the events
    // carry that time, so the rows this command wrote are folded again with it, exactly
    // as replay will fold them. Rare (clocks read out of lock order), so it costs a round
    // trip only then.
    let mut refolded = loaded.clone();
    for event in &draft.events {
        refolded.apply(event, recorded_at)?;
    }
    let packages: Vec<_> = draft
        .projection
        .packages
        .keys()
        .filter_map(|id| refolded.packages.get(id))
        .collect();
    let tasks: Vec<_> = draft
        .projection
        .tasks
        .keys()
        .filter_map(|id| refolded.tasks.get(id))
        .collect();
    let (packages, tasks) = tokio::join!(
        rows::update_packages(tx, &packages),
        rows::update_tasks(tx, &tasks)
    );
    let failed = [packages.err(), tasks.err()]
        .into_iter()
        .flatten()
        .map(StoreError::from);
    if let Some(error) = store::first_cause(failed) {
        return Err(LedgerError::Store(error));
    }
    Ok(())
}

/// A command run as a unit of work by [`run`]: one attempt locks and loads what it touches,
/// decides (with [`crate::domain`], pure), and writes what the decision needs beside the events;
/// [`run`] then appends the events, writes the projections and commits.
///
/// A trait rather than an async closure: the futures of an async closure that borrows the unit
/// of work cannot be shown to be `Send` (the sweeper and the ingest lanes run on spawned tasks).
pub trait Command: Send {
    type Output: Send;
    type Error: Retryable + Send;

    fn attempt(
        &mut self,
        unit: &mut UnitOfWork<'_>,
    ) -> impl Future<Output = Result<Self::Output, Self::Error>> + Send;

    /// Asked first about every failed attempt: `true` when the command has changed how it works
    /// so that the next attempt gets past this failure. Such attempts do not count against
    /// [`ATTEMPTS_MAX`]; the command bounds them itself.
    fn recover(
        &mut self,
        _ledger: &Ledger,
        _error: &Self::Error,
    ) -> impl Future<Output = bool> + Send {
        async { false }
    }
}

/// Runs `command` as a unit of work: begin, [`Command::attempt`], append the events, write the
/// projections, commit. An attempt that loses a race, wherever it loses it (a deadlock while
/// locking, a unique violation while loading, a concurrent append at commit), is rolled back and
/// run again whole, on a fresh transaction that sees the winner's rows; at most [`ATTEMPTS_MAX`]
/// attempts, [`backoff`] apart.
pub async fn run<C: Command>(
    ledger: &Ledger,
    metadata: &Metadata,
    mut command: C,
) -> Result<C::Output, C::Error> {
    let mut attempt = 1;
    loop {
        let error = match attempt_once(ledger, metadata, &mut command).await {
            Ok(output) => return Ok(output),
            Err(error) => error,
        };
        if command.recover(ledger, &error).await {
            continue;
        }
        if !error.is_retryable() || attempt >= ATTEMPTS_MAX {
            return Err(error);
        }
        tracing::debug!(attempt, "lost a race; retrying");
        metrics::counter!(crate::metrics::TRANSACTION_RETRIES).increment(1);
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
    }
}

/// The pause after failed attempt `attempt` (from 1): doubling, so that the losers of one race
/// spread out instead of meeting again at once.
fn backoff(attempt: u32) -> std::time::Duration {
    std::time::Duration::from_millis(BACKOFF_MS_BASE << (attempt - 1).min(ATTEMPTS_MAX))
}

async fn attempt_once<C: Command>(
    ledger: &Ledger,
    metadata: &Metadata,
    command: &mut C,
) -> Result<C::Output, C::Error> {
    let mut client = ledger.pool.get().await.map_err(LedgerError::from)?;
    let mut unit = UnitOfWork::begin(&mut client, ledger, metadata).await?;
    let output = command.attempt(&mut unit).await?;
    unit.commit().await?;
    Ok(output)
}
