// Package store is the Aidbox storage contract: what a resource row is and
// how fhirbulk reads and writes it, in both directions.
//
//   - Type names (ValidateType, DidYouMean, TableName, Table, HistoryTable):
//     a type's table is its lowercased name, its history table that name and
//     "_history".
//   - The layout (EnsureShared, EnsureTables, CheckTable, Layout): the DDL of
//     resource tables, resource_status and transaction_id_seq, and the checks
//     that a table that exists has the Aidbox columns.
//   - Writer locks (LockType, LockOrder) and txids (Layout.NextTxids,
//     Layout.AdvanceTxids).
//   - The type inventory (ListTypes, Inventory): the tables in the layout,
//     their sizes and counts.
//   - The row codec (Encoder, Decoder): a row (id, txid, ts, cts, resource)
//     to an ndjson line with id, resourceType and meta (versionId,
//     lastUpdated, createdAt) put back, and a line to the columns and the
//     resource to store, with one list of the meta members the columns own.
//   - Deletes, the Aidbox way: written (DeleteSQL) and found (DeletedSince).
//
// PostgreSQL plumbing (connections, errors, snapshots, the binary COPY codec)
// is package pg's.
package store
