//! What kind of business a desk serves: it decides which questions make a
//! job and which catalog prices it.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BusinessKind {
    #[default]
    JunkRemoval,
    Maid,
}

impl BusinessKind {
    /// As written in business.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            BusinessKind::JunkRemoval => "junk_removal",
            BusinessKind::Maid => "maid",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            BusinessKind::JunkRemoval => "a junk removal and hauling company",
            BusinessKind::Maid => "a residential maid and cleaning service",
        }
    }
}
