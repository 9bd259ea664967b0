//! The vault as the services use it: the master key ring (checked against the
//! database at start-up), per-tenant data keys (cached once unwrapped), and
//! master-key rotation.
//!
//! Rotation (`patchbay keys rotate`) runs beside live servers and can be
//! killed and re-run at any point; every step is derived from what the
//! database and the key file say:
//!
//! 1. With a single master key, a new key is generated and put first in the
//!    key file (`NEW`, then `OLD`). With two or more, a rotation is under way
//!    and continues with the first.
//! 2. Every tenant whose active data key is wrapped by an older master key gets
//!    a new data key version wrapped by the new one; older versions retire.
//! 3. Credentials encrypted with retired versions are re-encrypted with the
//!    active one (compare-and-set on their key id, so a concurrent save wins).
//! 4. Retired versions no credential needs are deleted (the database refuses
//!    to delete one still in use); any left are re-wrapped by the new key.
//! 5. The check value moves to the new key, and the old keys leave the file.
//!
//! Servers reload the key file when they meet a data key wrapped by a master
//! key they do not hold, so they keep working throughout.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use patchbay_core::{TenantId, Timestamp};
use patchbay_store::{
    Change, CredentialRecord, Store, StoreError, TenantKeyRecord, VaultCheckRecord,
};
use patchbay_vault::{
    CredentialAad, DataKey, ExposeSecret as _, KeyCheck, KeyId, MasterKey, MasterKeyRing,
    SecretString, VaultError, WrappedKey,
};

use crate::error::{Result, ServiceError};

/// Where the master keys come from.
#[derive(Debug)]
pub enum KeySource {
    /// A key file (created with mode 0600 on first start).
    File(PathBuf),
    /// `PATCHBAY_MASTER_KEY`: one or more keys, the first current.
    Inline(SecretString),
}

/// A vault problem at start-up or during rotation, as one readable sentence.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

impl From<VaultError> for KeyError {
    fn from(e: VaultError) -> Self {
        KeyError(e.to_string())
    }
}

impl From<StoreError> for KeyError {
    fn from(e: StoreError) -> Self {
        KeyError(e.to_string())
    }
}

/// Master keys and unwrapped data keys.
#[derive(Debug)]
pub struct KeyManager {
    source: KeySource,
    ring: RwLock<Arc<MasterKeyRing>>,
    data_keys: Mutex<HashMap<(String, i64), Arc<DataKey>>>,
}

fn check_record(c: &KeyCheck, at: Timestamp) -> VaultCheckRecord {
    VaultCheckRecord {
        key_id: c.key_id.to_string(),
        nonce: c.nonce.clone(),
        ciphertext: c.ciphertext.clone(),
        updated_at: at,
    }
}

fn check_of(r: &VaultCheckRecord) -> Result<KeyCheck, KeyError> {
    Ok(KeyCheck {
        key_id: KeyId::parse(&r.key_id)?,
        nonce: r.nonce.clone(),
        ciphertext: r.ciphertext.clone(),
    })
}

impl KeyManager {
    /// Opens the vault of `store`: verifies the master key against the stored
    /// check value, or, for a database never set up, loads or creates the key
    /// and stores its check value. On a mismatch nothing is written.
    pub async fn open(
        source: KeySource,
        store: &dyn Store,
        now: Timestamp,
    ) -> Result<KeyManager, KeyError> {
        let check = store.get_vault_check().await?;
        let ring = match (&source, &check) {
            (KeySource::Inline(text), _) => MasterKeyRing::parse(text.expose_secret())?,
            (KeySource::File(path), Some(c)) => {
                if !path.exists() {
                    return Err(KeyError(format!(
                        "this database was set up with master key {}, but the key file {} does not exist (set PATCHBAY_MASTER_KEY or restore the key file)",
                        c.key_id,
                        path.display()
                    )));
                }
                MasterKeyRing::load_file(path)?
            }
            (KeySource::File(path), None) => {
                if let Some(dir) = path
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty() && !d.exists())
                {
                    std::os::unix::fs::DirBuilderExt::mode(
                        std::fs::DirBuilder::new().recursive(true),
                        0o700,
                    )
                    .create(dir)
                    .map_err(|e| {
                        KeyError(format!(
                            "cannot create the directory of the master key file {}: {e}",
                            dir.display()
                        ))
                    })?;
                }
                let (ring, created) = MasterKeyRing::load_or_create_file(path)?;
                if created {
                    tracing::info!(path = %path.display(), key_id = %ring.current().id(), "created a new master key file; back it up: without it, stored credentials cannot be decrypted");
                }
                ring
            }
        };
        if let Some(c) = check {
            ring.verify_check(&check_of(&c)?)?;
        } else {
            let record = check_record(&ring.key_check(), now);
            match store
                .apply(vec![Change::PutVaultCheck {
                    record,
                    expect_key_id: None,
                }])
                .await
            {
                Ok(_) => {}
                // Another server initialised the vault at the same moment: verify against its value.
                Err(StoreError::Conflict(_)) => {
                    let c = store
                        .get_vault_check()
                        .await?
                        .ok_or_else(|| KeyError("the vault check value vanished".to_owned()))?;
                    ring.verify_check(&check_of(&c)?)?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(KeyManager {
            source,
            ring: RwLock::new(Arc::new(ring)),
            data_keys: Mutex::new(HashMap::new()),
        })
    }

    /// The current key ring.
    pub fn ring(&self) -> Arc<MasterKeyRing> {
        self.ring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_ring(&self, ring: MasterKeyRing) {
        *self
            .ring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ring);
    }

    /// Re-reads the key file (a rotation elsewhere may have added a key).
    fn reload(&self) -> Result<bool> {
        match &self.source {
            KeySource::File(path) => {
                let ring = MasterKeyRing::load_file(path)?;
                tracing::info!(keys = ring.ids().count(), "reloaded the master key file");
                self.set_ring(ring);
                Ok(true)
            }
            KeySource::Inline(_) => Ok(false),
        }
    }

    /// A new data key version for a tenant, wrapped by the current master key.
    pub fn new_tenant_key(
        &self,
        tenant: &TenantId,
        version: i64,
        now: Timestamp,
    ) -> (TenantKeyRecord, DataKey) {
        let key = DataKey::generate(version);
        let ring = self.ring();
        let wrapped = patchbay_vault::wrap_data_key(ring.current(), tenant.as_str(), &key);
        let record = TenantKeyRecord {
            tenant_id: tenant.clone(),
            version,
            master_key_id: wrapped.master_key_id.to_string(),
            nonce: wrapped.nonce,
            wrapped_key: wrapped.ciphertext,
            created_at: now,
            retired_at: None,
        };
        (record, key)
    }

    /// The unwrapped data key `version` of `tenant`.
    pub async fn data_key(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
        version: i64,
    ) -> Result<Arc<DataKey>> {
        let cache_key = (tenant.as_str().to_owned(), version);
        if let Some(k) = self
            .data_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&cache_key)
        {
            return Ok(k.clone());
        }
        let record = store
            .get_tenant_key(tenant, version)
            .await?
            .ok_or_else(|| {
                ServiceError::internal(&format!("data key {version} of tenant {tenant} is missing"))
            })?;
        let wrapped = WrappedKey {
            master_key_id: KeyId::parse(&record.master_key_id)?,
            nonce: record.nonce.clone(),
            ciphertext: record.wrapped_key.clone(),
        };
        let key =
            match patchbay_vault::unwrap_data_key(&self.ring(), tenant.as_str(), version, &wrapped)
            {
                Err(VaultError::UnknownMasterKey { .. }) if self.reload()? => {
                    patchbay_vault::unwrap_data_key(
                        &self.ring(),
                        tenant.as_str(),
                        version,
                        &wrapped,
                    )?
                }
                other => other?,
            };
        let key = Arc::new(key);
        self.data_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(cache_key, key.clone());
        Ok(key)
    }

    /// The version of the tenant's data key that encrypts new credentials,
    /// creating the first one if the tenant has none yet.
    pub async fn active_version(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
        now: Timestamp,
    ) -> Result<i64> {
        for _ in 0..3 {
            let keys = store.list_tenant_keys(Some(tenant)).await?;
            if let Some(k) = keys
                .iter()
                .filter(|k| k.retired_at.is_none())
                .max_by_key(|k| k.version)
            {
                return Ok(k.version);
            }
            let next = keys.iter().map(|k| k.version).max().unwrap_or(0) + 1;
            let (record, _) = self.new_tenant_key(tenant, next, now);
            match store.apply(vec![Change::PutTenantKey(record)]).await {
                Ok(_) => return Ok(next),
                Err(StoreError::Conflict(_)) => {} // created concurrently; read again
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::internal(&format!(
            "cannot settle the active data key of tenant {tenant}"
        )))
    }

    /// Encrypts credential values for a row.
    pub fn seal(
        &self,
        key: &DataKey,
        aad: &CredentialAad<'_>,
        plaintext: &[u8],
    ) -> (Vec<u8>, Vec<u8>) {
        let sealed = patchbay_vault::seal(key, aad, plaintext);
        (sealed.nonce, sealed.ciphertext)
    }

    /// Decrypts a stored credential row.
    pub async fn open_credential(
        &self,
        store: &dyn Store,
        c: &CredentialRecord,
    ) -> Result<patchbay_vault::Zeroizing<Vec<u8>>> {
        let key = self
            .data_key(store, &c.scope.tenant_id, c.key_version)
            .await?;
        let aad = CredentialAad {
            tenant_id: c.scope.tenant_id.as_str(),
            organization_id: c.scope.organization_id.as_str(),
            integration_id: &c.integration_id,
            key_version: c.key_version,
        };
        Ok(patchbay_vault::open(&key, &aad, &c.nonce, &c.ciphertext)?)
    }

    /// Runs (or resumes) a master-key rotation; see the module docs.
    pub async fn rotate(
        &self,
        store: &dyn Store,
        now: Timestamp,
        options: RotationOptions,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<RotationReport, KeyError> {
        let batch_size = options.batch_size.max(1);
        // Step 1: the new master key.
        let mut ring = self.ring();
        if ring.ids().count() == 1 {
            match &self.source {
                KeySource::File(path) => {
                    let next = ring.with_new_current(MasterKey::generate());
                    next.write_file_atomically(path)?;
                    progress(&format!(
                        "generated master key {} and wrote it first in {}",
                        next.current().id(),
                        path.display()
                    ));
                    self.set_ring(next);
                    ring = self.ring();
                }
                KeySource::Inline(_) => {
                    return Err(KeyError(
                        "PATCHBAY_MASTER_KEY holds a single key: put a new key first (NEW,OLD), restart the servers, then run the rotation".to_owned(),
                    ));
                }
            }
        } else {
            progress(&format!(
                "continuing the rotation to master key {}",
                ring.current().id()
            ));
        }
        let current = ring.current().id().to_string();
        let mut report = RotationReport {
            master_key_id: current.clone(),
            ..RotationReport::default()
        };

        for tenant in store.list_tenants().await? {
            let t = &tenant.id;
            // Step 2: a fresh active data key wrapped by the new master key.
            let keys = store.list_tenant_keys(Some(t)).await?;
            let active = keys
                .iter()
                .filter(|k| k.retired_at.is_none())
                .max_by_key(|k| k.version);
            let active_version = match active {
                Some(k) if k.master_key_id == current => k.version,
                _ => {
                    let next = keys.iter().map(|k| k.version).max().unwrap_or(0) + 1;
                    let (record, _) = self.new_tenant_key(t, next, now);
                    let mut changes = vec![Change::PutTenantKey(record)];
                    changes.extend(keys.iter().filter(|k| k.retired_at.is_none()).map(|k| {
                        Change::RetireTenantKey {
                            tenant_id: t.clone(),
                            version: k.version,
                            at: now,
                        }
                    }));
                    store.apply(changes).await?;
                    progress(&format!(
                        "tenant {}: new data key version {next}",
                        tenant.slug
                    ));
                    next
                }
            };
            // Steps 3 and 4, until no retired key is needed any more.
            for _round in 0..10 {
                loop {
                    let batch = store
                        .list_credentials_below_version(t, active_version, batch_size)
                        .await?;
                    if batch.is_empty() {
                        break;
                    }
                    let key = self
                        .data_key(store, t, active_version)
                        .await
                        .map_err(|e| KeyError(e.to_string()))?;
                    tokio::time::sleep(options.pause).await;
                    for c in batch {
                        let plain = self.open_credential(store, &c).await.map_err(|e| {
                            KeyError(format!(
                                "cannot decrypt the credentials of {} in tenant {}: {e}",
                                c.integration_id, tenant.slug
                            ))
                        })?;
                        let aad = CredentialAad {
                            tenant_id: t.as_str(),
                            organization_id: c.scope.organization_id.as_str(),
                            integration_id: &c.integration_id,
                            key_version: active_version,
                        };
                        let (nonce, ciphertext) = self.seal(&key, &aad, &plain);
                        let record = CredentialRecord {
                            key_version: active_version,
                            nonce,
                            ciphertext,
                            updated_at: now,
                            ..c.clone()
                        };
                        match store
                            .apply(vec![Change::ReplaceCredential {
                                record,
                                expect_key_id: c.key_id.clone(),
                            }])
                            .await
                        {
                            Ok(_) => report.reencrypted += 1,
                            Err(StoreError::Stale(_)) => {} // saved concurrently, under the active key
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                let mut still_needed = false;
                for k in store
                    .list_tenant_keys(Some(t))
                    .await?
                    .into_iter()
                    .filter(|k| k.version != active_version)
                {
                    match store
                        .apply(vec![Change::DeleteTenantKey {
                            tenant_id: t.clone(),
                            version: k.version,
                        }])
                        .await
                    {
                        Ok(_) => report.deleted_data_keys += 1,
                        Err(StoreError::Conflict(_)) => still_needed = true,
                        Err(e) => return Err(e.into()),
                    }
                }
                if !still_needed {
                    break;
                }
            }
            // Anything still wrapped by an old master key is re-wrapped.
            for k in store.list_tenant_keys(Some(t)).await? {
                if k.master_key_id != current {
                    let key = self
                        .data_key(store, t, k.version)
                        .await
                        .map_err(|e| KeyError(e.to_string()))?;
                    let wrapped = patchbay_vault::wrap_data_key(ring.current(), t.as_str(), &key);
                    let record = TenantKeyRecord {
                        master_key_id: current.clone(),
                        nonce: wrapped.nonce,
                        wrapped_key: wrapped.ciphertext,
                        ..k.clone()
                    };
                    store
                        .apply(vec![Change::RewrapTenantKey {
                            record,
                            expect_master_key_id: k.master_key_id.clone(),
                        }])
                        .await?;
                }
            }
            report.tenants += 1;
            tokio::time::sleep(options.pause).await;
        }

        // Step 5: the check value, then the old keys.
        let check = store.get_vault_check().await?;
        if let Some(c) = check.filter(|c| c.key_id != current) {
            let record = check_record(&ring.key_check(), now);
            store
                .apply(vec![Change::PutVaultCheck {
                    record,
                    expect_key_id: Some(c.key_id),
                }])
                .await?;
        }
        let leftover = store
            .list_tenant_keys(None)
            .await?
            .into_iter()
            .any(|k| k.master_key_id != current);
        if leftover {
            return Err(KeyError(
                "some data keys are still wrapped by an old master key; run the rotation again"
                    .to_owned(),
            ));
        }
        let old: Vec<String> = ring.ids().skip(1).map(ToString::to_string).collect();
        if !old.is_empty() {
            if let KeySource::File(path) = &self.source {
                let mut only = (*ring).clone();
                for id in ring.ids().skip(1) {
                    only = only.without(id)?;
                }
                only.write_file_atomically(path)?;
                self.set_ring(only);
                progress(&format!(
                    "removed {} old master key(s) from {}",
                    old.len(),
                    path.display()
                ));
            } else {
                progress(
                    "rotation complete: remove the old key(s) from PATCHBAY_MASTER_KEY and restart the servers",
                );
            }
        }
        report.removed_master_keys = old;
        Ok(report)
    }
}

/// How a rotation paces itself.
#[derive(Debug, Clone, Copy)]
pub struct RotationOptions {
    /// Credential sets re-encrypted per read from the database.
    pub batch_size: u32,
    /// A pause after each batch and each tenant, to spare a busy database.
    pub pause: std::time::Duration,
}

impl Default for RotationOptions {
    fn default() -> Self {
        RotationOptions {
            batch_size: 100,
            pause: std::time::Duration::ZERO,
        }
    }
}

/// What a rotation did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RotationReport {
    pub master_key_id: String,
    pub tenants: usize,
    pub reencrypted: u64,
    pub deleted_data_keys: u64,
    pub removed_master_keys: Vec<String>,
}
