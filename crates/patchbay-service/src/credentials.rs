//! The credentials service (SPEC-045a §2): save, resolve, masked read, remove.
//!
//! * The owner of a credential set is an integration or a bundle. An
//!   integration without fields of its own uses its bundle's form; saving
//!   credentials on such a member overrides the bundle's for that member.
//! * Save validates against the form — required fields, types, select options,
//!   URL syntax, unknown keys — and reports every problem at once. A secret
//!   sent back as the mask (`••••••••`) keeps the stored value, so a form can
//!   round-trip. Each save gets a new key id.
//! * Values are encrypted with the tenant's active data key; the associated
//!   data binds tenant, organization, owner id and key version.
//! * Resolve falls through from an integration to its bundle (§2.3).

use patchbay_core::credentials::{CredentialSchema, FieldType};
use patchbay_core::{Entry, Registry, Scope, Timestamp};
use patchbay_store::{Change, CredentialRecord};
use patchbay_vault::{CredentialAad, MASK};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::auth::{Caller, Feature};
use crate::error::{FieldError, Result, ServiceError};
use crate::{Services, audit, events};

/// Where resolved credentials came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The integration's (or bundle's) own credential set.
    Own,
    /// The bundle's shared set, for a member without its own.
    Bundle,
}

/// Decrypted credentials, for connectors. `Debug` never prints the values.
pub struct Resolved {
    /// The id the set is stored under (the integration, or its bundle).
    pub owner_id: String,
    pub source: Source,
    pub key_id: String,
    pub last_used_at: Option<Timestamp>,
    pub values: Map<String, Value>,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved")
            .field("owner_id", &self.owner_id)
            .field("source", &self.source)
            .field("key_id", &self.key_id)
            .field("last_used_at", &self.last_used_at)
            .field("values", &"[hidden]")
            .finish()
    }
}

/// Credentials as the API shows them: secrets masked.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaskedCredentials {
    /// The integration or bundle asked about.
    pub integration_id: String,
    /// `own`, `bundle` (shared credentials of the bundle), or absent when none are saved.
    pub source: Option<Source>,
    /// The bundle whose shared credentials apply, when `source` is `bundle`.
    pub bundle_id: Option<String>,
    pub key_id: Option<String>,
    /// Field values; every secret is `••••••••`.
    pub values: Map<String, Value>,
    pub updated_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

/// The form that applies to an id, and the bundle it falls through to.
pub(crate) struct Owner<'a> {
    pub schema: &'a CredentialSchema,
    pub fallback: Option<&'a str>,
    pub title: &'a str,
}

pub(crate) fn owner<'a>(reg: &'a Registry, id: &str) -> Result<Owner<'a>> {
    match reg.entry(id) {
        Some(Entry::Integration(i)) => {
            let bundle = reg.bundle_of(id);
            let schema = match bundle {
                Some(b) if i.credentials.is_empty() => &b.credentials,
                _ => &i.credentials,
            };
            Ok(Owner {
                schema,
                fallback: i.bundle_id.as_deref(),
                title: &i.title,
            })
        }
        Some(Entry::Bundle(b)) => Ok(Owner {
            schema: &b.credentials,
            fallback: None,
            title: &b.title,
        }),
        None => Err(ServiceError::NotFound(format!(
            "no integration or bundle `{id}`"
        ))),
    }
}

/// The credentials form that applies to an integration or bundle: its own
/// fields, or its bundle's for a member without any.
pub fn form_for<'a>(reg: &'a Registry, id: &str) -> Result<&'a CredentialSchema> {
    Ok(owner(reg, id)?.schema)
}

/// Checks `incoming` against `schema`; masked secrets take their value from
/// `existing`. Returns the values to store, or every problem found.
pub(crate) fn validate(
    schema: &CredentialSchema,
    incoming: &Map<String, Value>,
    existing: Option<&Map<String, Value>>,
) -> Result<Map<String, Value>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let at = |k: &str| format!("values.{k}");
    for key in incoming.keys() {
        if schema.field(key).is_none() {
            errors.push(FieldError::new(
                at(key),
                "unknown_field",
                format!("`{key}` is not a credential field here"),
            ));
        }
    }
    let mut out = Map::new();
    for f in &schema.fields {
        let given = incoming.get(&f.key);
        let empty = matches!(given, None | Some(Value::Null))
            || given
                .and_then(Value::as_str)
                .is_some_and(|s| s.trim().is_empty());
        if empty {
            if f.required {
                errors.push(FieldError::new(
                    at(&f.key),
                    "required",
                    format!("{} is required", f.label),
                ));
            }
            continue;
        }
        let v = given.expect("checked non-empty");
        if f.field_type.is_secret() && v.as_str() == Some(MASK) {
            match existing.and_then(|e| e.get(&f.key)) {
                Some(kept) => {
                    out.insert(f.key.clone(), kept.clone());
                }
                None => errors.push(FieldError::new(
                    at(&f.key),
                    "required",
                    format!("{} has no stored value to keep; enter it", f.label),
                )),
            }
            continue;
        }
        let problem = match (f.field_type, v) {
            (FieldType::Text | FieldType::Secret, Value::String(s)) if s.len() > 16_384 => {
                Some(("too_long", "must be at most 16384 characters".to_owned()))
            }
            (FieldType::Text | FieldType::Secret, Value::String(_))
            | (FieldType::Boolean, Value::Bool(_))
            | (FieldType::Number, Value::Number(_)) => None,
            (FieldType::Url, Value::String(s)) => patchbay_core::text::parse_http_url(s)
                .err()
                .map(|e| ("invalid_url", format!("is {e}"))),
            (FieldType::Select, Value::String(s)) => {
                if f.options.iter().any(|o| &o.value == s) {
                    None
                } else {
                    let allowed: Vec<&str> = f.options.iter().map(|o| o.value.as_str()).collect();
                    Some((
                        "invalid_option",
                        format!("must be one of {}", allowed.join(", ")),
                    ))
                }
            }
            (FieldType::Oauth2, _) => Some((
                "managed_field",
                "is set by the OAuth connect flow, not by saving the form".to_owned(),
            )),
            (FieldType::SshKey, _) => Some((
                "managed_field",
                "is generated by Patchbay, not entered".to_owned(),
            )),
            (t, _) => Some((
                "invalid_type",
                format!(
                    "must be a {}",
                    match t {
                        FieldType::Boolean => "boolean",
                        FieldType::Number => "number",
                        _ => "string",
                    }
                ),
            )),
        };
        match problem {
            Some((code, message)) => errors.push(FieldError::new(
                at(&f.key),
                code,
                format!("{} {message}", f.label),
            )),
            None => {
                out.insert(f.key.clone(), v.clone());
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The values with every secret field replaced by the mask.
pub(crate) fn mask(schema: &CredentialSchema, values: &Map<String, Value>) -> Map<String, Value> {
    values
        .iter()
        .map(|(k, v)| {
            let secret = schema.field(k).is_none_or(|f| f.field_type.is_secret());
            (
                k.clone(),
                if secret {
                    Value::String(MASK.to_owned())
                } else {
                    v.clone()
                },
            )
        })
        .collect()
}

impl Services {
    /// Decrypts the stored set of `record`.
    async fn decrypt(&self, record: &CredentialRecord) -> Result<Map<String, Value>> {
        let plain = self.keys().open_credential(self.store(), record).await?;
        serde_json::from_slice(&plain).map_err(|e| {
            ServiceError::internal(&format!(
                "stored credentials of {} are not a JSON object: {e}",
                record.integration_id
            ))
        })
    }

    /// The credentials an integration (or bundle) uses in `scope`, with
    /// bundle fallthrough; `None` when neither has any. This is a *use*: the
    /// set's last-used time is recorded.
    pub async fn resolve_credentials(&self, scope: &Scope, id: &str) -> Result<Option<Resolved>> {
        let resolved = self.peek_credentials(scope, id).await?;
        if let Some(r) = &resolved {
            let now = self.now();
            if r.last_used_at.is_none_or(|t| t.plus_seconds(60) < now) {
                self.store()
                    .touch_credential(scope, &r.owner_id, now)
                    .await?;
            }
        }
        Ok(resolved)
    }

    /// Like [`Services::resolve_credentials`], for Patchbay's own checks
    /// (enable validation, log redaction), which are not uses.
    pub(crate) async fn peek_credentials(
        &self,
        scope: &Scope,
        id: &str,
    ) -> Result<Option<Resolved>> {
        let reg = self.registry();
        let owner = owner(&reg, id)?;
        Ok(match self.find_record(scope, id, owner.fallback).await? {
            Some((record, source)) => {
                let values = self.decrypt(&record).await?;
                Some(Resolved {
                    owner_id: record.integration_id,
                    source,
                    key_id: record.key_id,
                    last_used_at: record.last_used_at,
                    values,
                })
            }
            None => None,
        })
    }

    async fn find_record(
        &self,
        scope: &Scope,
        id: &str,
        fallback: Option<&str>,
    ) -> Result<Option<(CredentialRecord, Source)>> {
        let ids: Vec<&str> = std::iter::once(id).chain(fallback).collect();
        let mut found = self.store().find_credentials(scope, &ids).await?;
        Ok(if found.is_empty() {
            None
        } else {
            let r = found.remove(0);
            let source = if r.integration_id == id {
                Source::Own
            } else {
                Source::Bundle
            };
            Some((r, source))
        })
    }

    /// The credentials of an integration or bundle with secrets masked.
    pub async fn credentials_masked(&self, caller: &Caller, id: &str) -> Result<MaskedCredentials> {
        let scope = caller.scope_with(Feature::IntegrationsCredentials)?;
        let reg = self.registry();
        let owner = owner(&reg, id)?;
        let found = self.find_record(scope, id, owner.fallback).await?;
        Ok(match found {
            Some((record, source)) => {
                let values = self.decrypt(&record).await?;
                MaskedCredentials {
                    integration_id: id.to_owned(),
                    bundle_id: (source == Source::Bundle).then(|| record.integration_id.clone()),
                    source: Some(source),
                    key_id: Some(record.key_id.clone()),
                    values: mask(owner.schema, &values),
                    updated_at: Some(record.updated_at),
                    last_used_at: record.last_used_at,
                }
            }
            None => MaskedCredentials {
                integration_id: id.to_owned(),
                source: None,
                bundle_id: None,
                key_id: None,
                values: Map::new(),
                updated_at: None,
                last_used_at: None,
            },
        })
    }

    /// Validates, encrypts and stores the credentials of an integration or bundle.
    pub async fn save_credentials(
        &self,
        caller: &Caller,
        id: &str,
        incoming: Map<String, Value>,
    ) -> Result<MaskedCredentials> {
        self.audited(caller, "credentials.update", id, async {
            let scope = caller.scope_with(Feature::IntegrationsCredentials)?.clone();
            let reg = self.registry();
            let owner = owner(&reg, id)?;
            if owner.schema.is_empty() {
                return Err(ServiceError::invalid(
                    format!("{} takes no credentials", owner.title),
                    Vec::new(),
                ));
            }
            let existing = match self.find_record(&scope, id, owner.fallback).await? {
                Some((record, _)) => Some(self.decrypt(&record).await?),
                None => None,
            };
            let values = validate(owner.schema, &incoming, existing.as_ref())
                .map_err(|errors| ServiceError::invalid("the credentials are invalid", errors))?;
            let now = self.now();
            let version = self
                .keys()
                .active_version(self.store(), &scope.tenant_id, now)
                .await?;
            let key = self
                .keys()
                .data_key(self.store(), &scope.tenant_id, version)
                .await?;
            let plaintext = zeroize::Zeroizing::new(
                serde_json::to_vec(&values).map_err(|e| ServiceError::internal(&e))?,
            );
            let aad = CredentialAad {
                tenant_id: scope.tenant_id.as_str(),
                organization_id: scope.organization_id.as_str(),
                integration_id: id,
                key_version: version,
            };
            let (nonce, ciphertext) = self.keys().seal(&key, &aad, &plaintext);
            let previous = self
                .store()
                .find_credentials(&scope, &[id])
                .await?
                .into_iter()
                .next();
            let record = CredentialRecord {
                scope: scope.clone(),
                integration_id: id.to_owned(),
                key_id: format!("key_{}", uuid::Uuid::new_v4().simple()),
                key_version: version,
                nonce,
                ciphertext,
                created_at: previous.as_ref().map_or(now, |p| p.created_at),
                updated_at: now,
                last_used_at: previous.as_ref().and_then(|p| p.last_used_at),
            };
            let fields: Vec<&String> = values.keys().collect();
            self.store()
                .apply(vec![
                    Change::PutCredential(record.clone()),
                    events::event(
                        &scope,
                        events::CREDENTIALS_UPDATED,
                        id,
                        &serde_json::json!({ "integrationId": id, "keyId": record.key_id }),
                        now,
                    ),
                    audit::success(
                        caller,
                        Some(&scope),
                        "credentials.update",
                        id,
                        Some(serde_json::json!({ "keyId": record.key_id, "fields": fields })),
                        now,
                    ),
                ])
                .await?;
            self.log_lifecycle(
                &scope,
                id,
                "credentials.updated",
                &format!("Credentials updated (key {})", record.key_id),
            )
            .await;
            Ok(MaskedCredentials {
                integration_id: id.to_owned(),
                source: Some(Source::Own),
                bundle_id: None,
                key_id: Some(record.key_id),
                values: mask(owner.schema, &values),
                updated_at: Some(now),
                last_used_at: record.last_used_at,
            })
        })
        .await
    }

    /// Hard-deletes the own credentials of an integration or bundle.
    pub async fn remove_credentials(&self, caller: &Caller, id: &str) -> Result<()> {
        self.audited(caller, "credentials.remove", id, async {
            let scope = caller.scope_with(Feature::IntegrationsCredentials)?.clone();
            owner(&self.registry(), id)?;
            if self
                .store()
                .find_credentials(&scope, &[id])
                .await?
                .is_empty()
            {
                return Err(ServiceError::NotFound(format!(
                    "`{id}` has no credentials of its own"
                )));
            }
            let now = self.now();
            self.store()
                .apply(vec![
                    Change::DeleteCredential {
                        scope: scope.clone(),
                        integration_id: id.to_owned(),
                    },
                    events::event(
                        &scope,
                        events::CREDENTIALS_REMOVED,
                        id,
                        &serde_json::json!({ "integrationId": id }),
                        now,
                    ),
                    audit::success(caller, Some(&scope), "credentials.remove", id, None, now),
                ])
                .await?;
            self.log_lifecycle(&scope, id, "credentials.removed", "Credentials removed")
                .await;
            Ok(())
        })
        .await
    }
}
