//! The bytes on the wire, for a peer in another language, a recovery tool or a custom
//! transport's author: nothing here needs reading a private module.
//!
//! A transport moves these bytes opaquely; only a replica written in another language
//! (a JavaScript tab speaking to Rust replicas, say) needs to produce or read them. The
//! store's log, which holds the same state in records of its own, is described on
//! [`Persist`](crate::Persist).
//!
//! # The envelope
//!
//! Every message is one envelope, encoded with the group's wire codec
//! ([`Config::wire_codec`](crate::Config::wire_codec)) and followed by its integrity
//! check. The fields, in this order:
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `schema` | u16 | [`SCHEMA_VERSION`] (2); a newer schema is refused, never guessed at |
//! | `sender` | [`SourceId`](crate::SourceId) | the replica that sent it |
//! | `incarnation` | u64 | the sender's HLC time when this run of it started: a restart is told apart from a replay |
//! | `seq` | u64 | the message's number, from 1, one more per message of this run (1 ..= 2^63 - 1) |
//! | `hlc` | u64 | the sender's hybrid logical clock at sending (ms since the Unix epoch, logical) |
//! | `term` | u64 | the highest lease term the sender knows (0 in distributed mode, at most [`MAX_TERM`](crate::stamp::MAX_TERM)) |
//! | `body` | one of the bodies below | what the message is for |
//!
//! The bodies, in declaration order (postcard writes the index as a varint; JSON names
//! the variant as the only key of an object, as serde's externally tagged enums do):
//!
//! | index | body | fields, in order |
//! |---|---|---|
//! | 0 | `Delta` | `dseq: u64` (the sender's delta number, from 1), `state: State` holding only the sender's own writes |
//! | 1 | `Lease` | `dseq: u64`, `lease: Lease`, a record of the sender's own |
//! | 2 | `SyncRequest` | `to: Option<SourceId>` (`None`: whoever answers first) |
//! | 3 | `FullSync` | `to: Option<SourceId>`, `dseq: u64` (the sender's last delta number), `part: u32`, `parts: u32`, `state: State` (a state that does not fit in one message travels as `parts` messages, each a valid state on its own) |
//! | 4 | `Request` | `to: Option<SourceId>` (the leader it is for), `hops: u8` (times passed on by a former leader), `request: R` (the application's type) |
//! | 5 | `Heartbeat` | `dseq: u64`, `digest: u64` (of the sender's whole state: equal digests, equal states) |
//! | 6 | `Goodbye` | none |
//!
//! The values inside:
//!
//! - `State`: `lease: Option<Lease>`, then `app`: the application's bundle, a struct of
//!   registers encoded field by field in declaration order (its `serde` derive);
//! - [`Lease`](crate::Lease): `term: u64`, `renew_seq: u64`, `holder: SourceId`,
//!   `released: bool`, `duration_ms: u64`;
//! - [`Lww<T>`](crate::Lww): `stamp: Stamp`, `value: Option<T>` (`None`, JSON
//!   `null`, is a cleared register or a map's tombstone);
//! - [`LwwMap<K, V>`](crate::LwwMap): a map from each key to its `Lww<V>`, tombstones
//!   included, in key order;
//! - [`Stamp`](crate::Stamp): `version: u64` (in leader mode the writer's term in the
//!   high 32 bits), `updated_at: u64` (HLC ms), `source: SourceId`;
//! - [`SourceId`](crate::SourceId): a UUID, as its hyphenated string in JSON and as 16
//!   bytes in postcard (a length of 16, then the bytes).
//!
//! # Codecs and the integrity check
//!
//! - binary ([`Codec::Binary`](crate::Codec::Binary)): postcard (integers as
//!   LEB128 varints, `Option` as a 0/1 byte then the value, sequences and maps with a
//!   varint length first), then a CRC-32 (IEEE, as zlib computes it) of those bytes, 4
//!   bytes little-endian;
//! - JSON ([`Codec::Json`](crate::Codec::Json)): the JSON text (struct fields as
//!   object keys, UTF-8), then a newline and the CRC-32 of the text as 8 lowercase hex
//!   digits: a JavaScript peer checks and strips the last 9 bytes.
//!
//! A message arriving here is checked in this order, and refused whole at the first
//! failure: its length against [`Config::max_message_bytes`](crate::Config), the
//! integrity check, the schema, the decoding, then every field it will trust (the
//! sequence numbers; terms no higher than the envelope's; a lease record's holder and a
//! delta's stamps being the sender's own; versions within
//! [`MAX_VERSION`](crate::stamp::MAX_VERSION); stamp times no further ahead than the drift
//! bound; part numbers; a lease record of at least 1 ms). What a record or message may
//! say about time is bounded by the receiver's own configuration: a lease lasts at
//! most its own `duration_ms` as it measures it, whatever the record says. No message
//! is sent larger than the limit: deltas and full states are split, and a request that
//! does not fit is refused when it is made.
//!
//! # An example
//!
//! A delta of one write to a `title: Lww<String>` and two to a
//! `notes: LwwMap<String, u32>` (an insertion and a removal), in JSON; the last line is
//! the integrity check:
//!
//! ```text
//! {"schema":2,"sender":"00000000-0000-0000-0000-000000000001","incarnation":1700000000000,"seq":2,"hlc":1700000000000,"term":0,
//!  "body":{"Delta":{"dseq":1,"state":{"lease":null,"app":{
//!    "title":{"stamp":{"version":1,"updated_at":1700000000000,"source":"00000000-0000-0000-0000-000000000001"},"value":"hi"},
//!    "notes":{"a":{"stamp":{"version":1,"updated_at":1700000000000,"source":"00000000-0000-0000-0000-000000000001"},"value":1},
//!             "b":{"stamp":{"version":1,"updated_at":1700000000000,"source":"00000000-0000-0000-0000-000000000001"},"value":null}}}}}}}
//! 76ae8871
//! ```
//!
//! (Shown over several lines here; on the wire the JSON text is one line.)

pub use crate::wire::SCHEMA_VERSION;
