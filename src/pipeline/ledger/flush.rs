//! [`Ledger::flush`]: everything a transaction's working set changed, written with one statement
//! per table (per [`CHUNK`] rows and [`crate::db::statement_bytes`]), in an order that lets later
//! rows name earlier ones: buyers, entitlements, facts, subscriber codes, notifications, audit
//! rows, the inbox rows' outcomes. Placeholder ids become real ones as they are learned.
use std::collections::HashMap;

use entity::{access_fact as af, audit_log, buyer, buyer_subscriber_code as subcode, entitlement, notification};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryTrait, Set};

use super::{CHUNK, Ledger, Outcome};
use crate::AppResult;
use crate::audit;
use crate::db::runs;
use crate::pipeline::outbox;

impl Ledger {
    /// Writes every change made since the last flush, a statement per table (per [`CHUNK`]
    /// rows), in the caller's transaction, and last the counts of what it announced.
    pub async fn flush(&mut self, db: &impl ConnectionTrait) -> AppResult<()> {
        if self.dry {
            return Err(crate::AppError::internal(anyhow::anyhow!(
                "a dry ledger is never written"
            )));
        }
        self.write(db).await?;
        // Last, and once however often a batch wrote early: on PostgreSQL the shadow's and the
        // tally's rows are shared by every batch, and their locks are held from here to the
        // commit (always in this order).
        super::super::shadow::record(db, std::mem::take(&mut self.shadows)).await?;
        outbox::tally(db, std::mem::take(&mut self.counted)).await
    }

    /// [`Self::flush`] but for the tally, which keeps counting until then.
    pub(super) async fn write(&mut self, db: &impl ConnectionTrait) -> AppResult<()> {
        let max = crate::db::statement_bytes(db.get_database_backend());
        self.delete_dropped_facts(db).await?;
        self.write_buyers(db, max).await?;
        self.write_entitlements(db, max).await?;
        self.write_facts(db, max).await?;
        self.write_subscriber_codes(db, max).await?;
        self.write_notifications(db, max).await?;
        self.write_audits(db, max).await?;
        let outcomes = std::mem::take(&mut self.outcomes);
        for chunk in runs(&outcomes, CHUNK, max, |o| {
            o.error.as_ref().map_or(0, String::len) + o.decision.as_ref().map_or(0, String::len) + 200
        }) {
            write_outcomes(db, chunk).await?;
        }
        Ok(())
    }

    /// The facts of inbox rows being reprocessed (a replay) go first; the new ones replace them.
    async fn delete_dropped_facts(&mut self, db: &impl ConnectionTrait) -> AppResult<()> {
        for chunk in std::mem::take(&mut self.dropped).chunks(CHUNK) {
            af::Entity::delete_many()
                .filter(af::Column::WebhookEventId.is_in(chunk.to_vec()))
                .exec(db)
                .await?;
        }
        Ok(())
    }

    /// New buyers (their real ids learned) and renamed ones. First: rows and links name them.
    async fn write_buyers(&mut self, db: &impl ConnectionTrait, max: usize) -> AppResult<()> {
        let backend = db.get_database_backend();
        let new_buyers: Vec<buyer::Model> = self.buyers.values().flatten().filter(|b| b.id < 0).cloned().collect();
        for chunk in runs(&new_buyers, CHUNK, max, |b| b.email.len() + b.name.len() + 64) {
            let mut stmt = buyer::Entity::insert_many(chunk.iter().map(|b| buyer::ActiveModel {
                app_id: Set(b.app_id),
                email: Set(b.email.clone()),
                name: Set(b.name.clone()),
                created_at: Set(b.created_at),
                updated_at: Set(b.updated_at),
                ..Default::default()
            }))
            .into_query();
            stmt.returning(Query::returning().columns([buyer::Column::Id, buyer::Column::AppId, buyer::Column::Email]));
            for r in db.query_all_raw(backend.build(&stmt)).await? {
                let (id, app_id, email): (i32, i32, String) =
                    (r.try_get("", "id")?, r.try_get("", "app_id")?, r.try_get("", "email")?);
                let key = (app_id, email);
                if let Some(Some(b)) = self.buyers.get_mut(&key) {
                    self.real.insert(b.id, id);
                    b.id = id;
                }
                self.buyer_keys.insert(id, key);
            }
        }
        for key in std::mem::take(&mut self.renamed) {
            if let Some(Some(b)) = self.buyers.get(&key) {
                buyer::ActiveModel {
                    id: sea_orm::ActiveValue::Unchanged(b.id),
                    name: Set(b.name.clone()),
                    updated_at: Set(b.updated_at),
                    ..Default::default()
                }
                .update(db)
                .await?;
            }
        }
        Ok(())
    }

    /// Changed entitlement rows, upserted by source (their real ids learned).
    async fn write_entitlements(&mut self, db: &impl ConnectionTrait, max: usize) -> AppResult<()> {
        let backend = db.get_database_backend();
        let rows: Vec<entitlement::Model> = std::mem::take(&mut self.dirty_rows)
            .iter()
            .filter_map(|k| self.rows.get(k).cloned().flatten())
            .collect();
        for chunk in runs(&rows, CHUNK, max, |r| r.source.len() + r.reason.len() + 160) {
            let models = chunk.iter().map(|r| entitlement::ActiveModel {
                app_id: Set(r.app_id),
                buyer_id: Set(self.resolve(r.buyer_id)),
                target_kind: Set(r.target_kind.clone()),
                target_id: Set(r.target_id),
                source: Set(r.source.clone()),
                status: Set(r.status),
                granted_at: Set(r.granted_at),
                revoked_at: Set(r.revoked_at),
                expires_at: Set(r.expires_at),
                last_event_id: Set(r.last_event_id),
                rule_version: Set(r.rule_version),
                reason: Set(r.reason.clone()),
                created_at: Set(r.created_at),
                updated_at: Set(r.updated_at),
                version: Set(r.version),
                expiry_noted: Set(r.expiry_noted),
                term: Set(r.term),
                ..Default::default()
            });
            use entitlement::Column as C;
            let mut stmt = entitlement::Entity::insert_many(models.collect::<Vec<_>>())
                .on_conflict(
                    OnConflict::columns([C::AppId, C::Source])
                        .update_columns([
                            C::BuyerId,
                            C::TargetKind,
                            C::TargetId,
                            C::Status,
                            C::GrantedAt,
                            C::RevokedAt,
                            C::ExpiresAt,
                            C::LastEventId,
                            C::RuleVersion,
                            C::Reason,
                            C::UpdatedAt,
                            C::Version,
                            C::ExpiryNoted,
                            C::Term,
                        ])
                        .to_owned(),
                )
                .into_query();
            stmt.returning(Query::returning().columns([C::Id, C::AppId, C::Source]));
            for r in db.query_all_raw(backend.build(&stmt)).await? {
                let (id, app_id, source): (i32, i32, String) =
                    (r.try_get("", "id")?, r.try_get("", "app_id")?, r.try_get("", "source")?);
                if let Some(Some(row)) = self.rows.get_mut(&(app_id, source)) {
                    if row.id < 0 {
                        self.real.insert(row.id, id);
                    }
                    row.id = id;
                    row.buyer_id = if row.buyer_id < 0 {
                        self.real.get(&row.buyer_id).copied().unwrap_or(row.buyer_id)
                    } else {
                        row.buyer_id
                    };
                }
            }
        }
        Ok(())
    }

    /// New facts of the sources' histories.
    async fn write_facts(&mut self, db: &impl ConnectionTrait, max: usize) -> AppResult<()> {
        let facts = std::mem::take(&mut self.new_facts);
        for chunk in runs(&facts, CHUNK, max, |(k, f, _)| {
            k.1.len() + f.key.len() + f.reason.len() + 200
        }) {
            let now = chrono::Utc::now();
            af::Entity::insert_many(chunk.iter().map(|((app_id, source), f, actor)| af::ActiveModel {
                app_id: Set(*app_id),
                source: Set(source.clone()),
                effect: Set(f.effect.as_str().to_string()),
                event_type: Set(f.event_type.clone()),
                fact_key: Set(f.key.clone()),
                transaction: Set(f.transaction.clone()),
                occurred_at: Set(f.occurred_at),
                paid_at: Set(f.paid_at),
                until: Set(f.until),
                email: Set(f.email.clone()),
                target_kind: Set(f.target.0.as_str().to_string()),
                target_id: Set(f.target.1),
                webhook_event_id: Set((f.event_row > 0).then_some(f.event_row)),
                rule_version: Set(f.rule_version),
                actor: Set(actor.clone()),
                reason: Set(f.reason.clone()),
                created_at: Set(now),
                ..Default::default()
            }))
            .exec_without_returning(db)
            .await?;
        }
        Ok(())
    }

    /// Subscriber codes bound to new holders, or first seen.
    async fn write_subscriber_codes(&mut self, db: &impl ConnectionTrait, max: usize) -> AppResult<()> {
        let mut new_codes = Vec::new();
        let mut new_code_keys = Vec::new();
        for key in std::mem::take(&mut self.dirty_codes) {
            let Some(Some(link)) = self.codes.get(&key).cloned() else {
                continue;
            };
            let buyer_id = self.resolve(link.buyer_id);
            if link.id < 0 {
                new_code_keys.push(key);
                new_codes.push(subcode::ActiveModel {
                    app_id: Set(link.app_id),
                    buyer_id: Set(buyer_id),
                    code: Set(link.code.clone()),
                    created_at: Set(link.created_at),
                    ..Default::default()
                });
            } else {
                subcode::ActiveModel {
                    id: sea_orm::ActiveValue::Unchanged(link.id),
                    buyer_id: Set(buyer_id),
                    ..Default::default()
                }
                .update(db)
                .await?;
            }
        }
        for chunk in runs(&new_codes, CHUNK, max, |_| 100) {
            subcode::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(db)
                .await?;
        }
        // Their ids are never needed again in this transaction; a later change reads them anew.
        for k in new_code_keys {
            self.codes.remove(&k);
        }
        Ok(())
    }

    /// What the changes announce, for apps that listen: their endpoints' notifications and their
    /// changes feed (see [`outbox`]).
    async fn write_notifications(&mut self, db: &impl ConnectionTrait, max: usize) -> AppResult<()> {
        let notes = std::mem::take(&mut self.notes);
        let listening = outbox::listening(db, notes.iter().map(|n| n.row.app_id)).await?;
        self.counted.extend(
            notes
                .iter()
                .flat_map(|n| n.news.iter().map(|a| (n.row.app_id, a.event_type))),
        );
        let mut out: Vec<notification::ActiveModel> = Vec::new();
        for note in notes.into_iter().filter(|n| listening.contains(&n.row.app_id)) {
            let mut row = note.row;
            row.id = self.resolve(row.id);
            let mut names = HashMap::new();
            for a in &note.news {
                let name = self.target_name(db, row.app_id, a.side.target).await?;
                names.insert(a.side.target, name);
            }
            out.extend(outbox::models(&row, &note.news, &note.cause, &names)?);
        }
        for chunk in runs(&out, CHUNK, max, |n| n.payload.as_ref().len() + 100) {
            notification::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(db)
                .await?;
        }
        Ok(())
    }

    /// One audit row per entitlement change.
    async fn write_audits(&mut self, db: &impl ConnectionTrait, max: usize) -> AppResult<()> {
        let audits: Vec<audit_log::ActiveModel> = std::mem::take(&mut self.audits)
            .into_iter()
            .map(|a| {
                audit::model(audit::Entry {
                    app_id: a.app_id,
                    actor: &a.actor,
                    action: a.action,
                    target: format!("entitlement:{}", self.resolve(a.entitlement)),
                    before: a.before,
                    after: a.after,
                    reason: &a.reason,
                })
            })
            .collect();
        for chunk in runs(&audits, CHUNK, max, |a| {
            let len = |v: &sea_orm::ActiveValue<Option<String>>| v.as_ref().as_ref().map_or(0, String::len);
            len(&a.before) + len(&a.after) + a.reason.as_ref().len() + 100
        }) {
            audit_log::Entity::insert_many(chunk.to_vec())
                .exec_without_returning(db)
                .await?;
        }
        Ok(())
    }
}

/// One UPDATE for many inbox rows, each with its own values (the same SQL on both databases).
async fn write_outcomes(db: &impl ConnectionTrait, rows: &[Outcome]) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    use entity::webhook_event as we;
    use sea_orm::sea_query::{Alias, CommonTableExpression, Expr, ExprTrait, Func, ValueTuple, WithClause};
    // WITH v(id, status, …) AS (VALUES (…), …) UPDATE webhook_event SET status = v.status, …
    // FROM v WHERE webhook_event.id = v.id: the same statement on both databases.
    const COLUMNS: [&str; 14] = [
        "id",
        "status",
        "error",
        "decision",
        "rule_version",
        "email",
        "source_key",
        "target_kind",
        "target_id",
        "tx",
        "occurred_at",
        "event_type",
        "attempts",
        "processed_at",
    ];
    let tuples: Vec<ValueTuple> = rows
        .iter()
        .map(|o| {
            ValueTuple::Many(vec![
                o.id.into(),
                o.status.as_str().into(),
                o.error.clone().into(),
                o.decision.clone().into(),
                o.rule_version.into(),
                o.email.clone().into(),
                o.source_key.clone().into(),
                o.target_kind.clone().into(),
                o.target_id.into(),
                o.transaction.clone().into(),
                o.occurred_at.into(),
                o.event_type.clone().into(),
                o.attempts.into(),
                o.processed_at.into(),
            ])
        })
        .collect();
    let v = Alias::new("v");
    let given = |c: &str| Expr::col((v.clone(), Alias::new(c)));
    let kept = |given: Expr, stored: we::Column| Func::coalesce([given, Expr::col((we::Entity, stored))]);
    let cte = CommonTableExpression::new()
        .table_name(v.clone())
        .columns(COLUMNS.map(Alias::new))
        .query(
            Query::select()
                .column(sea_orm::sea_query::Asterisk)
                .from_values(tuples, Alias::new("given"))
                .to_owned(),
        )
        .to_owned();
    let update = Query::update()
        .table(we::Entity)
        .values([
            (we::Column::Status, given("status")),
            (we::Column::Error, given("error")),
            (we::Column::Decision, given("decision")),
            (we::Column::RuleVersion, given("rule_version")),
            (we::Column::Email, given("email")),
            (we::Column::SourceKey, given("source_key")),
            (we::Column::TargetKind, given("target_kind")),
            (we::Column::TargetId, given("target_id")),
            (we::Column::Transaction, given("tx")),
            (
                we::Column::OccurredAt,
                kept(given("occurred_at"), we::Column::OccurredAt).into(),
            ),
            (
                we::Column::EventType,
                kept(given("event_type"), we::Column::EventType).into(),
            ),
            (we::Column::Attempts, given("attempts")),
            (we::Column::ProcessedAt, given("processed_at")),
        ])
        .from(v.clone())
        .and_where(Expr::col((we::Entity, we::Column::Id)).equals((v, Alias::new("id"))))
        .to_owned()
        .with(WithClause::new().cte(cte).to_owned());
    db.execute_raw(db.get_database_backend().build(&update)).await?;
    Ok(())
}
