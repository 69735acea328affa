//! The read-through caches of the webhook path and the worker, and the generations that keep
//! them honest.
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

/// Read-through caches of the webhook path and the worker. Entries live a minute at most (ten
/// seconds for what an admin edits, so a second process sharing a PostgreSQL database sees an
/// edit soon), and a change made through this process applies to the next delivery at once.
pub struct HotCache {
    pub apps_by_key: moka::sync::Cache<String, entity::app::Model>,
    /// Slug → app, for the admin token of every GraphQL request (an app's slug never changes,
    /// and apps are never deleted).
    pub apps_by_slug: moka::sync::Cache<String, entity::app::Model>,
    pub hottoks: moka::sync::Cache<i32, Option<secrecy::SecretString>>,
    /// (app, generation, Hotmart product, Hotmart plan) → the package or plan it maps to.
    pub targets: moka::sync::Cache<(i32, u64, String, String), Option<crate::domain::Target>>,
    /// (app, generation, kind, id) → whether the app has that package or plan (the access
    /// check's 404).
    pub target_exists: moka::sync::Cache<(i32, u64, crate::domain::TargetKind, i32), bool>,
    /// (app, generation, key) → the package or plan with that admin-set key.
    pub target_keys: moka::sync::Cache<(i32, u64, String), Option<(crate::domain::TargetKind, i32)>>,
    /// API key id → its row (`None`: no such key). Revoking drops the entry at once; another
    /// process sharing the database sees a revocation within ten seconds.
    pub api_keys: moka::sync::Cache<String, Option<entity::api_key::Model>>,
    /// (app, generation, event type) → the active script.
    pub scripts: moka::sync::Cache<(i32, u64, String), Option<crate::rules::ActiveScript>>,
    /// App → whether any of its buyers was erased: the worker looks a source up only then.
    pub erasures: moka::sync::Cache<i32, bool>,
    catalog_gen: Generations<i32>,
    rules_gen: Generations<i32>,
}

/// Generations that are part of a cache key (per app, or per app and shard). A change bumps its
/// generation, so an entry read from the database before the change (even one inserted after it)
/// is never found again.
pub struct Generations<K>(Mutex<HashMap<K, u64>>);

impl<K> Default for Generations<K> {
    fn default() -> Self {
        Generations(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq> Generations<K> {
    pub fn get(&self, k: &K) -> u64 {
        self.lock().get(k).copied().unwrap_or(0)
    }
    pub fn bump(&self, k: K) {
        *self.lock().entry(k).or_default() += 1;
    }
    /// Several generations read at once, consistently.
    pub fn read<T>(&self, f: impl FnOnce(&dyn Fn(&K) -> u64) -> T) -> T {
        let g = self.lock();
        f(&|k| g.get(k).copied().unwrap_or(0))
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, u64>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl HotCache {
    pub fn catalog_generation(&self, app_id: i32) -> u64 {
        self.catalog_gen.get(&app_id)
    }
    pub fn rules_generation(&self, app_id: i32) -> u64 {
        self.rules_gen.get(&app_id)
    }
    /// After a package, plan or product link of the app changed.
    pub fn forget_catalog(&self, app_id: i32) {
        self.catalog_gen.bump(app_id);
    }
    /// Everything another instance may have changed (signals may have been missed).
    pub fn forget_all(&self) {
        self.hottoks.invalidate_all();
        self.targets.invalidate_all();
        self.target_exists.invalidate_all();
        self.target_keys.invalidate_all();
        self.api_keys.invalidate_all();
        self.scripts.invalidate_all();
        self.erasures.invalidate_all();
    }
    /// After a rule of the app was saved or activated.
    pub fn forget_rules(&self, app_id: i32) {
        self.rules_gen.bump(app_id);
    }
}

impl Default for HotCache {
    fn default() -> Self {
        let ttl = Duration::from_secs(60);
        let edited = Duration::from_secs(10);
        HotCache {
            apps_by_key: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            apps_by_slug: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            hottoks: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build(),
            targets: moka::sync::Cache::builder()
                .max_capacity(50_000)
                .time_to_live(edited)
                .build(),
            target_exists: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(edited)
                .build(),
            target_keys: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(edited)
                .build(),
            api_keys: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(edited)
                .build(),
            scripts: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(edited)
                .build(),
            erasures: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(edited)
                .build(),
            catalog_gen: Generations::default(),
            rules_gen: Generations::default(),
        }
    }
}
