//! The names a group uses in the browser: its BroadcastChannel, its Web Lock, and its
//! localStorage keys.
//!
//! Every key of a group starts with `replisync:<group>:`, the group name escaped so
//! that no group's keys can be read as another's (`%` and `:` are percent-encoded).
//! Under that prefix:
//!
//! | key | holds |
//! |---|---|
//! | `log:<source>:<seq>` | one record of the store log of replica `<source>` (see [`crate::store`]) |
//! | `msg:<source>:<seq>` | a message in flight, when the `storage` event carries the messages |
//! | `term` | the last lease term granted under the Web Lock |
//! | `holder` | the id of the replica granted that term |
//! | `probe` | written and removed once at start, to test that localStorage works |

use replisync::SourceId;

/// The longest group name accepted, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 256;

/// The names derived from one group name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Names {
    group: String,
    prefix: String,
}

impl Names {
    /// The names of `group`, or why the name is refused.
    pub fn new(group: &str) -> Result<Self, String> {
        let chars = group.chars().count();
        if chars == 0 {
            return Err(
                "the group name is empty; give every group a name, such as \"session\"".into(),
            );
        }
        if chars > MAX_GROUP_NAME_CHARS {
            return Err(format!(
                "the group name is {chars} characters long; at most {MAX_GROUP_NAME_CHARS} are allowed"
            ));
        }
        let mut escaped = String::with_capacity(group.len());
        for c in group.chars() {
            match c {
                '%' => escaped.push_str("%25"),
                ':' => escaped.push_str("%3A"),
                c => escaped.push(c),
            }
        }
        Ok(Names {
            group: group.to_owned(),
            prefix: format!("replisync:{escaped}:"),
        })
    }

    /// The group name as given.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The name of the group's BroadcastChannel.
    pub fn channel(&self) -> String {
        format!("{}channel", self.prefix)
    }

    /// The name of the group's Web Lock.
    pub fn lock(&self) -> String {
        format!("{}lease", self.prefix)
    }

    /// The key of record `seq` of `source`'s store log.
    pub fn log_key(&self, source: SourceId, seq: u64) -> String {
        format!("{}log:{source}:{seq}", self.prefix)
    }

    /// The source and sequence number of a store-log key of this group.
    pub fn parse_log_key(&self, key: &str) -> Option<(SourceId, u64)> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("log:")?;
        let (source, seq) = rest.split_once(':')?;
        Some((source.parse().ok()?, seq.parse().ok()?))
    }

    /// The key of message `seq` from `source`, for the `storage`-event channel.
    pub fn message_key(&self, source: SourceId, seq: u64) -> String {
        format!("{}msg:{source}:{seq}", self.prefix)
    }

    /// The sender of a message key of this group.
    pub fn parse_message_key(&self, key: &str) -> Option<SourceId> {
        let rest = key.strip_prefix(&self.prefix)?.strip_prefix("msg:")?;
        let (source, seq) = rest.split_once(':')?;
        seq.parse::<u64>().ok()?;
        source.parse().ok()
    }

    /// The key of the last term granted under the Web Lock.
    pub fn term_key(&self) -> String {
        format!("{}term", self.prefix)
    }

    /// The key of the holder of the last term granted under the Web Lock (its id), so
    /// that a refusal can name it.
    pub fn holder_key(&self) -> String {
        format!("{}holder", self.prefix)
    }

    /// The key written once to test localStorage.
    pub fn probe_key(&self) -> String {
        format!("{}probe", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_bindgen_test::wasm_bindgen_test;

    #[wasm_bindgen_test]
    fn keys_of_one_group_are_not_another_groups() {
        let a = Names::new("a").unwrap();
        let nested = Names::new("a:log").unwrap();
        let me = SourceId::from_u128(7);
        let key = nested.log_key(me, 3);
        assert_eq!(nested.parse_log_key(&key), Some((me, 3)));
        assert_eq!(a.parse_log_key(&key), None);
        assert_eq!(a.parse_message_key(&nested.message_key(me, 1)), None);
        assert_eq!(a.parse_message_key(&a.message_key(me, 1)), Some(me));
        assert_ne!(
            Names::new("a%3A").unwrap().channel(),
            Names::new("a:").unwrap().channel()
        );
    }

    #[wasm_bindgen_test]
    fn names_are_checked() {
        assert!(Names::new("").unwrap_err().contains("empty"));
        assert!(Names::new(&"x".repeat(MAX_GROUP_NAME_CHARS + 1)).is_err());
        assert!(Names::new(&"é".repeat(MAX_GROUP_NAME_CHARS)).is_ok());
    }
}
