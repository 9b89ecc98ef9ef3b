//! The statements, written once per store with the quoted table name. Every value is a bind
//! parameter; the only configured text in them is the schema and table name, validated by
//! [`SqlIdentifier`](crate::SqlIdentifier) and quoted.

use crate::name::SqlIdentifier;
use crate::row::COLUMNS;

/// How far the stored checkpoint has come, comparable with `ROW(rank, sequence, sub)` built from
/// the new checkpoint: start sentinels 0, positions 1 (then the numeric sequence number and the
/// sub-sequence number), `SHARD_END` 2.
const STORED_PROGRESS: &str = "ROW(CASE WHEN checkpoint = 'SHARD_END' THEN 2 \
     WHEN checkpoint IN ('TRIM_HORIZON', 'LATEST', 'AT_TIMESTAMP') THEN 0 ELSE 1 END, \
     COALESCE(checkpoint_sequence, 0), \
     CASE WHEN checkpoint_sequence IS NULL THEN 0 ELSE checkpoint_sub_sequence END)";

#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) create_schema: String,
    pub(crate) create_table: String,
    /// Whether the table has the hand-off column (binds: schema, table).
    pub(crate) has_checkpoint_owner: String,
    /// Adds the hand-off column to a table made before it existed. Run only when missing: it
    /// takes an exclusive lock on the table, and needs its owner's rights.
    pub(crate) add_checkpoint_owner: String,
    /// The schema and table names as stored in the catalog.
    pub(crate) schema_name: String,
    pub(crate) table_name: String,
    pub(crate) lock_key: String,
    pub(crate) list: String,
    pub(crate) get: String,
    /// `get`, locking the row until the transaction ends.
    pub(crate) get_for_update: String,
    pub(crate) create_if_absent: String,
    pub(crate) take: String,
    pub(crate) renew: String,
    pub(crate) renew_many: String,
    pub(crate) evict: String,
    pub(crate) update_checkpoint: String,
    pub(crate) mark_ended: String,
    pub(crate) request_handoff: String,
    pub(crate) reset_checkpoint: String,
    pub(crate) delete: String,
    pub(crate) delete_namespace: String,
    /// The membership record: one table per schema, `shardwise_members`, keyed by lease table,
    /// namespace and worker; the version is the row whose worker is `''` (no worker id is
    /// empty).
    pub(crate) create_members: String,
    pub(crate) heartbeat: String,
    pub(crate) heartbeat_at: String,
    pub(crate) membership: String,
    pub(crate) leave: String,
    pub(crate) delete_namespace_members: String,
}

impl Statements {
    pub(crate) fn new(schema: &SqlIdentifier, table: &SqlIdentifier) -> Self {
        let t = format!("{}.{}", schema.quoted(), table.quoted());
        let m = format!("{}.\"shardwise_members\"", schema.quoted());
        // Held by $3: the checkpoint owner during a hand-off, otherwise the owner.
        let owned_at = "namespace = $1 AND lease_key = $2 \
             AND COALESCE(checkpoint_owner, owner) = $3 AND counter = $4";
        Self {
            create_schema: format!("CREATE SCHEMA IF NOT EXISTS {}", schema.quoted()),
            // Sequence numbers are text in the KCL's form; the generated numeric column makes
            // the "never backwards" condition compare them as numbers.
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                 namespace TEXT NOT NULL, \
                 lease_key TEXT COLLATE \"C\" NOT NULL, \
                 owner TEXT, \
                 counter BIGINT NOT NULL, \
                 checkpoint_owner TEXT, \
                 checkpoint TEXT NOT NULL, \
                 checkpoint_sub_sequence BIGINT NOT NULL DEFAULT 0, \
                 checkpoint_sequence NUMERIC(130,0) GENERATED ALWAYS AS (\
                   CASE WHEN checkpoint ~ '^[0-9]{{1,129}}$' \
                   THEN checkpoint::NUMERIC(130,0) END) STORED, \
                 pending_checkpoint TEXT, \
                 pending_checkpoint_sub_sequence BIGINT, \
                 pending_checkpoint_state BYTEA, \
                 owner_switches_since_checkpoint BIGINT NOT NULL DEFAULT 0, \
                 parent_shard_ids TEXT[] NOT NULL DEFAULT '{{}}', \
                 child_shard_ids TEXT[] NOT NULL DEFAULT '{{}}', \
                 starting_hash_key NUMERIC(39,0), \
                 ending_hash_key NUMERIC(39,0), \
                 PRIMARY KEY (namespace, lease_key))"
            ),
            has_checkpoint_owner: "SELECT 1 FROM information_schema.columns \
                 WHERE table_schema = $1 AND table_name = $2 AND column_name = 'checkpoint_owner'"
                .to_owned(),
            schema_name: schema.as_str().to_owned(),
            table_name: table.as_str().to_owned(),
            add_checkpoint_owner: format!(
                "ALTER TABLE {t} ADD COLUMN IF NOT EXISTS checkpoint_owner TEXT"
            ),
            // Serialises concurrent creators of the same table (CREATE ... IF NOT EXISTS alone
            // can still fail with a duplicate-key error when two sessions race).
            lock_key: format!("{}.{}", schema.as_str(), table.as_str()),
            // lease_key is COLLATE "C": byte order of UTF-8, the same as Rust's `str` order.
            list: format!("SELECT {COLUMNS} FROM {t} WHERE namespace = $1 ORDER BY lease_key"),
            get: format!("SELECT {COLUMNS} FROM {t} WHERE namespace = $1 AND lease_key = $2"),
            get_for_update: format!(
                "SELECT {COLUMNS} FROM {t} WHERE namespace = $1 AND lease_key = $2 FOR UPDATE"
            ),
            create_if_absent: format!(
                "INSERT INTO {t} (namespace, lease_key, owner, counter, checkpoint, \
                 checkpoint_sub_sequence, pending_checkpoint, pending_checkpoint_sub_sequence, \
                 pending_checkpoint_state, owner_switches_since_checkpoint, parent_shard_ids, \
                 child_shard_ids, starting_hash_key, ending_hash_key, checkpoint_owner) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                 $13::NUMERIC(39,0), $14::NUMERIC(39,0), $15) \
                 ON CONFLICT (namespace, lease_key) DO NOTHING RETURNING {COLUMNS}"
            ),
            take: format!(
                "UPDATE {t} SET owner = $3, checkpoint_owner = NULL, counter = counter + 1, \
                 owner_switches_since_checkpoint = owner_switches_since_checkpoint \
                   + CASE WHEN owner IS DISTINCT FROM $3 THEN 1 ELSE 0 END \
                 WHERE namespace = $1 AND lease_key = $2 AND counter = $4 RETURNING {COLUMNS}"
            ),
            renew: format!(
                "UPDATE {t} SET counter = counter + 1 WHERE {owned_at} RETURNING counter"
            ),
            renew_many: format!(
                "UPDATE {t} AS l SET counter = l.counter + 1 \
                 FROM unnest($2::TEXT[], $3::BIGINT[]) AS r(lease_key, counter) \
                 WHERE l.namespace = $1 AND l.lease_key = r.lease_key \
                 AND l.counter = r.counter AND COALESCE(l.checkpoint_owner, l.owner) = $4 \
                 RETURNING l.lease_key, l.counter"
            ),
            evict: format!(
                // During a hand-off the lease goes to its new owner, otherwise to nobody.
                "UPDATE {t} SET owner = CASE WHEN checkpoint_owner IS NULL THEN NULL ELSE owner END, \
                 checkpoint_owner = NULL, counter = counter + 1 \
                 WHERE {owned_at} RETURNING {COLUMNS}"
            ),
            request_handoff: format!(
                "UPDATE {t} SET owner = $4, checkpoint_owner = owner, counter = counter + 1, \
                 owner_switches_since_checkpoint = owner_switches_since_checkpoint + 1 \
                 WHERE namespace = $1 AND lease_key = $2 AND owner = $3 \
                 AND checkpoint_owner IS NULL AND counter = $5 RETURNING {COLUMNS}"
            ),
            update_checkpoint: format!(
                "UPDATE {t} SET checkpoint = $5, checkpoint_sub_sequence = $6, \
                 pending_checkpoint = $7, pending_checkpoint_sub_sequence = $8, \
                 pending_checkpoint_state = $9, owner_switches_since_checkpoint = 0, \
                 counter = counter + 1 \
                 WHERE {owned_at} \
                 AND ROW($10::INT, COALESCE($11::NUMERIC, 0), $12::BIGINT) >= {STORED_PROGRESS} \
                 RETURNING {COLUMNS}"
            ),
            mark_ended: format!(
                "UPDATE {t} SET checkpoint = 'SHARD_END', checkpoint_sub_sequence = 0, \
                 pending_checkpoint = NULL, pending_checkpoint_sub_sequence = NULL, \
                 pending_checkpoint_state = NULL, owner_switches_since_checkpoint = 0, \
                 child_shard_ids = $5, counter = counter + 1 \
                 WHERE {owned_at} RETURNING {COLUMNS}"
            ),
            reset_checkpoint: format!(
                "UPDATE {t} SET owner = NULL, checkpoint_owner = NULL, checkpoint = $4, checkpoint_sub_sequence = $5, \
                 pending_checkpoint = NULL, pending_checkpoint_sub_sequence = NULL, \
                 pending_checkpoint_state = NULL, owner_switches_since_checkpoint = 0, \
                 counter = counter + 1 \
                 WHERE namespace = $1 AND lease_key = $2 AND counter = $3 RETURNING {COLUMNS}"
            ),
            delete: format!(
                "DELETE FROM {t} WHERE namespace = $1 AND lease_key = $2 AND counter = $3"
            ),
            delete_namespace: format!("DELETE FROM {t} WHERE namespace = $1"),
            create_members: format!(
                "CREATE TABLE IF NOT EXISTS {m} (\
                 lease_table TEXT NOT NULL, \
                 namespace TEXT NOT NULL, \
                 worker TEXT NOT NULL, \
                 heartbeat BIGINT NOT NULL, \
                 PRIMARY KEY (lease_table, namespace, worker))"
            ),
            // Binds: lease table, namespace, worker ('' for the version).
            heartbeat: format!(
                "INSERT INTO {m} AS m (lease_table, namespace, worker, heartbeat) \
                 VALUES ($1, $2, $3, 1) ON CONFLICT (lease_table, namespace, worker) \
                 DO UPDATE SET heartbeat = m.heartbeat + 1 RETURNING heartbeat"
            ),
            // Binds: lease table, namespace, worker, expected heartbeat.
            heartbeat_at: format!(
                "UPDATE {m} SET heartbeat = heartbeat + 1 WHERE lease_table = $1 \
                 AND namespace = $2 AND worker = $3 AND heartbeat = $4 RETURNING heartbeat"
            ),
            membership: format!(
                "SELECT worker, heartbeat FROM {m} WHERE lease_table = $1 AND namespace = $2"
            ),
            leave: format!(
                "DELETE FROM {m} WHERE lease_table = $1 AND namespace = $2 AND worker = $3 \
                 AND worker <> '' AND heartbeat = $4"
            ),
            delete_namespace_members: format!(
                "DELETE FROM {m} WHERE lease_table = $1 AND namespace = $2"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_name_is_always_quoted() {
        let (schema, table) = match (
            SqlIdentifier::new("schema", "sch"),
            SqlIdentifier::new("table", "tab"),
        ) {
            (Ok(s), Ok(t)) => (s, t),
            other => panic!("{other:?}"),
        };
        let sql = Statements::new(&schema, &table);
        for statement in [
            &sql.list,
            &sql.take,
            &sql.renew_many,
            &sql.delete,
            &sql.create_table,
        ] {
            assert!(statement.contains("\"sch\".\"tab\""), "{statement}");
            assert!(!statement.contains(" sch.tab"), "{statement}");
        }
    }
}
