//! The businesses this process answers for, and which one a number reaches.
//!
//! `BUSINESS_CONFIG` names one file (one business, answering every number,
//! as before businesses existed) or a directory, where each `*.toml` is one
//! business. A `BusinessDirectory` hands out the current `Arc` of each
//! business's configuration; `reload` re-reads everything and swaps it in
//! only when every file is valid, so a turn holding the old `Arc` finishes
//! on it and the next turn sees the edit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::business::{BusinessConfig, ConfigError, parse_sender};
use super::fragments::{self, Fragment, FragmentError};
use crate::domain::phone::E164;

/// Rows written before businesses existed carry this id until the store
/// gives them to a configured business at start (see
/// `Store::adopt_legacy_rows`).
pub const LEGACY_BUSINESS_ID: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{}: cannot read the business configuration: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// One business file that cannot be read.
    #[error(transparent)]
    File(#[from] ConfigError),
    #[error("{}: no business files (*.toml) in this directory", .0.display())]
    Empty(PathBuf),
    #[error("this configuration was given to textdesk, not read from a file, so it cannot be reloaded")]
    NotReloadable,
    /// Every problem found, one per line, each `file:line:column: key: message`.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "{}:{line}:{column}: business.numbers: {number} is also claimed by {}:{other_line}:{other_column} (business `{other_id}`); a number can reach only one business",
        path.display(), other_path.display()
    )]
    NumberClaimedTwice {
        number: String,
        path: PathBuf,
        line: usize,
        column: usize,
        other_id: String,
        other_path: PathBuf,
        other_line: usize,
        other_column: usize,
    },
    #[error(
        "{}:1:1: business.phone: no number reaches this business; in a directory of businesses each needs `phone` or `numbers`",
        .0.display()
    )]
    NoNumber(PathBuf),
    #[error("{}:1:1: business.id: `{id}` is also the id of {}", path.display(), other_path.display())]
    IdTwice {
        id: String,
        path: PathBuf,
        other_path: PathBuf,
    },
    /// A console setting the edited file no longer accepts.
    #[error("{}: the owner console's setting {error} (change it on /owner/settings)", path.display())]
    Console { path: PathBuf, error: FragmentError },
}

/// One consistent set of businesses: what a turn looks its business up in.
#[derive(Debug)]
pub struct Businesses {
    /// Bumped by every accepted reload and every console save.
    pub version: u64,
    /// Sorted by id.
    pub list: Vec<(PathBuf, Arc<BusinessConfig>)>,
    by_id: HashMap<String, usize>,
    by_number: HashMap<String, usize>,
    /// One file: that business answers every number, as before.
    answers_every_number: bool,
}

impl Businesses {
    pub fn get(&self, id: &str) -> Option<&Arc<BusinessConfig>> {
        self.by_id.get(id).map(|&i| &self.list[i].1)
    }

    /// The business a text sent to `to` (E.164 or `whatsapp:+E164`) reaches.
    pub fn route(&self, to: &str) -> Option<&Arc<BusinessConfig>> {
        if self.answers_every_number {
            return self.list.first().map(|(_, b)| b);
        }
        let canonical = parse_sender(to)?;
        self.by_number.get(&canonical).map(|&i| &self.list[i].1)
    }

    /// One file: its business answers every number and every conversation.
    pub fn answers_every_number(&self) -> bool {
        self.answers_every_number
    }

    /// The only business, when there is exactly one.
    pub fn single(&self) -> Option<&Arc<BusinessConfig>> {
        match self.list.as_slice() {
            [(_, only)] => Some(only),
            _ => None,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<BusinessConfig>> {
        self.list.iter().map(|(_, b)| b)
    }

    /// The file `id` was read from.
    pub fn path_of(&self, id: &str) -> Option<&Path> {
        self.by_id.get(id).map(|&i| self.list[i].0.as_path())
    }

    /// The same set with `config` in place of its business's entry.
    fn with(&self, version: u64, config: Arc<BusinessConfig>) -> Businesses {
        let mut list = self.list.clone();
        if let Some(&i) = self.by_id.get(&config.business.id) {
            list[i].1 = config;
        }
        Businesses {
            version,
            list,
            by_id: self.by_id.clone(),
            by_number: self.by_number.clone(),
            answers_every_number: self.answers_every_number,
        }
    }

    /// Every business with its console fragments applied; one a fragment
    /// no longer fits is a problem, like a bad file.
    fn overlaid(mut self, fragments: &HashMap<String, Vec<Fragment>>) -> Result<Businesses, DirectoryError> {
        let mut problems = Vec::new();
        for (path, config) in &mut self.list {
            let Some(own) = fragments.get(&config.business.id) else {
                continue;
            };
            match fragments::apply(config, path, own) {
                Ok(applied) => *config = Arc::new(applied),
                Err(error) => problems.push(Problem::Console {
                    path: path.clone(),
                    error,
                }),
            }
        }
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(DirectoryError::Invalid(problems))
        }
    }
}

pub struct BusinessDirectory {
    path: PathBuf,
    /// False when built from parsed configurations (tests): there is no
    /// file to re-read.
    reloadable: bool,
    /// `TWILIO_FROM_NUMBER`: the number of a single-file business that
    /// states no `[business] phone`, applied on every (re)load.
    default_phone: Option<E164>,
    current: RwLock<Arc<Businesses>>,
    /// The owner console's settings per business id, laid over the files
    /// on every (re)load, so a SIGHUP keeps them.
    fragments: RwLock<HashMap<String, Vec<Fragment>>>,
    /// Reloads and console saves, one at a time: neither may swap in a set
    /// built before the other's.
    changes: Mutex<()>,
}

impl BusinessDirectory {
    pub fn load(path: &Path) -> Result<Self, DirectoryError> {
        Self::load_with_default_phone(path, None)
    }

    /// As `load`; a single file without `[business] phone` takes
    /// `default_phone` (`TWILIO_FROM_NUMBER`) as its number.
    pub fn load_with_default_phone(path: &Path, default_phone: Option<E164>) -> Result<Self, DirectoryError> {
        let businesses = with_default_phone(load_businesses(path, 1)?, path, default_phone.as_ref());
        Ok(Self {
            path: path.to_path_buf(),
            reloadable: true,
            default_phone,
            current: RwLock::new(Arc::new(businesses)),
            fragments: RwLock::default(),
            changes: Mutex::default(),
        })
    }

    /// A directory of already-parsed businesses (tests, benches).
    pub fn from_configs(
        path: &Path,
        configs: Vec<(PathBuf, BusinessConfig)>,
    ) -> Result<Self, DirectoryError> {
        let answers_every_number = configs.len() == 1 && !path.is_dir();
        let businesses = index(configs, answers_every_number, 1, &HashMap::new())?;
        Ok(Self {
            path: path.to_path_buf(),
            reloadable: false,
            default_phone: None,
            current: RwLock::new(Arc::new(businesses)),
            fragments: RwLock::default(),
            changes: Mutex::default(),
        })
    }

    /// The current set. Cheap: one read lock and one `Arc` clone.
    pub fn current(&self) -> Arc<Businesses> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn business(&self, id: &str) -> Option<Arc<BusinessConfig>> {
        self.current().get(id).cloned()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads and validates every file; swaps the new set in only if all
    /// of it is valid. On error the old set keeps serving.
    pub fn reload(&self) -> Result<Arc<Businesses>, DirectoryError> {
        if !self.reloadable {
            return Err(DirectoryError::NotReloadable);
        }
        let _one_change = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let version = self.current().version + 1;
        let fresh = Arc::new(
            with_default_phone(
                load_businesses(&self.path, version)?,
                &self.path,
                self.default_phone.as_ref(),
            )
            .overlaid(&self.fragments.read().unwrap_or_else(|e| e.into_inner()))?,
        );
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    /// Lays the console's stored fragments (per business id) over the
    /// files, at start; kept for every later reload. A business whose
    /// fragments no longer fit its file is left as its file says, and
    /// reported.
    pub fn apply_stored_fragments(&self, all: HashMap<String, Vec<Fragment>>) -> Vec<Problem> {
        let _one_change = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let mut current = self.current();
        let mut problems = Vec::new();
        let mut applied_ok = HashMap::new();
        for (id, fragments) in all {
            let Some(path) = current.path_of(&id).map(Path::to_path_buf) else {
                // No file has this business now; if one does again after a
                // reload, its settings come back with it.
                applied_ok.insert(id, fragments);
                continue;
            };
            let Some(config) = current.get(&id) else { continue };
            match fragments::apply(config, &path, &fragments) {
                Ok(applied) => {
                    current = Arc::new(current.with(current.version, Arc::new(applied)));
                    applied_ok.insert(id, fragments);
                }
                // Left out, so the file's value serves and reloads are not
                // refused over it; a save from the console replaces it.
                Err(error) => problems.push(Problem::Console { path, error }),
            }
        }
        *self.fragments.write().unwrap_or_else(|e| e.into_inner()) = applied_ok;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = current;
        problems
    }

    /// `id`'s configuration as it would be with `fragments` (all of the
    /// console's settings for it) instead of its current ones.
    pub fn preview(&self, id: &str, fragments: &[Fragment]) -> Option<Result<BusinessConfig, FragmentError>> {
        let current = self.current();
        let config = current.get(id)?;
        let path = current.path_of(id)?;
        Some(fragments::apply(config, path, fragments))
    }

    /// Makes `fragments` `id`'s console settings from the next turn on
    /// (the caller has stored them). `None`: no such business.
    pub fn install(
        &self,
        id: &str,
        fragments: Vec<Fragment>,
    ) -> Option<Result<Arc<BusinessConfig>, FragmentError>> {
        let _one_change = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current();
        let config = match fragments::apply(current.get(id)?, current.path_of(id)?, &fragments) {
            Ok(config) => Arc::new(config),
            Err(e) => return Some(Err(e)),
        };
        let fresh = Arc::new(current.with(current.version + 1, config.clone()));
        let mut stored = self.fragments.write().unwrap_or_else(|e| e.into_inner());
        if fragments.is_empty() {
            stored.remove(id);
        } else {
            stored.insert(id.to_string(), fragments);
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Some(Ok(config))
    }
}

/// A single file's business with no `[business] phone` takes
/// `TWILIO_FROM_NUMBER`'s; a directory's businesses each claim their own.
fn with_default_phone(mut businesses: Businesses, path: &Path, default: Option<&E164>) -> Businesses {
    if path.is_dir() {
        return businesses;
    }
    if let (Some(default), [(_, only)]) = (default, businesses.list.as_mut_slice())
        && only.business.phone.is_none()
    {
        Arc::make_mut(only).business.phone = Some(default.clone());
    }
    businesses
}

/// Reads `path`, a file or a directory of `*.toml` files.
pub fn load_businesses(path: &Path, version: u64) -> Result<Businesses, DirectoryError> {
    let is_dir = path.is_dir();
    let files = if is_dir {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|source| DirectoryError::Read {
                path: path.to_path_buf(),
                source,
            })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(DirectoryError::Empty(path.to_path_buf()));
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut texts = HashMap::new();
    let mut configs = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(source) => {
                if !is_dir {
                    return Err(DirectoryError::File(ConfigError::Read { path: file, source }));
                }
                problems.push(Problem::Config(ConfigError::Read { path: file, source }));
                continue;
            }
        };
        match BusinessConfig::parse(&text, &file) {
            Ok(config) => configs.push((file.clone(), config)),
            Err(e) => problems.push(Problem::Config(e)),
        }
        texts.insert(file, text);
    }
    if !problems.is_empty() {
        return Err(DirectoryError::Invalid(problems));
    }
    index(configs, !is_dir, version, &texts)
}

fn index(
    mut configs: Vec<(PathBuf, BusinessConfig)>,
    answers_every_number: bool,
    version: u64,
    texts: &HashMap<PathBuf, String>,
) -> Result<Businesses, DirectoryError> {
    configs.sort_by(|a, b| a.1.business.id.cmp(&b.1.business.id));
    let mut problems = Vec::new();
    let mut by_id = HashMap::new();
    let mut by_number: HashMap<String, usize> = HashMap::new();
    for (i, (path, config)) in configs.iter().enumerate() {
        if let Some(&other) = by_id.get(&config.business.id) {
            let other: &(PathBuf, BusinessConfig) = &configs[other];
            problems.push(Problem::IdTwice {
                id: config.business.id.clone(),
                path: path.clone(),
                other_path: other.0.clone(),
            });
            continue;
        }
        by_id.insert(config.business.id.clone(), i);
        if !answers_every_number && config.senders().is_empty() {
            problems.push(Problem::NoNumber(path.clone()));
        }
        for number in config.senders() {
            if let Some(&other) = by_number.get(&number) {
                let (other_path, other_config) = &configs[other];
                let (line, column) = locate(texts.get(path), &number);
                let (other_line, other_column) = locate(texts.get(other_path), &number);
                problems.push(Problem::NumberClaimedTwice {
                    number: number.clone(),
                    path: path.clone(),
                    line,
                    column,
                    other_id: other_config.business.id.clone(),
                    other_path: other_path.clone(),
                    other_line,
                    other_column,
                });
                continue;
            }
            by_number.insert(number, i);
        }
    }
    if !problems.is_empty() {
        return Err(DirectoryError::Invalid(problems));
    }
    Ok(Businesses {
        version,
        list: configs.into_iter().map(|(p, c)| (p, Arc::new(c))).collect(),
        by_id,
        by_number,
        answers_every_number,
    })
}

/// Line and column (1-based) of a number's first mention in a file.
fn locate(text: Option<&String>, number: &str) -> (usize, usize) {
    let digits = number.trim_start_matches("whatsapp:");
    let Some(text) = text else { return (1, 1) };
    let Some(at) = text.find(digits) else {
        return (1, 1);
    };
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn a_directory_routes_each_number_to_its_business() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "junk.toml",
            "[business]\nname = \"Junk\"\nphone = \"+15035550142\"\n",
        );
        write(
            dir.path(),
            "maid.toml",
            "[business]\nname = \"Maid\"\nkind = \"maid\"\nphone = \"+15035550143\"\nnumbers = [\"whatsapp:+15035550144\"]\n",
        );
        let all = load_businesses(dir.path(), 1).unwrap();
        assert_eq!(all.route("+15035550142").unwrap().business.id, "junk");
        assert_eq!(all.route("+15035550143").unwrap().business.id, "maid");
        assert_eq!(all.route("whatsapp:+15035550144").unwrap().business.id, "maid");
        assert!(all.route("+15035550199").is_none());
        assert!(all.single().is_none());
    }

    #[test]
    fn one_file_answers_every_number() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "business.toml", "[business]\nname = \"Junk\"\n");
        let all = load_businesses(&dir.path().join("business.toml"), 1).unwrap();
        assert_eq!(all.route("+15035550199").unwrap().business.id, "business");
    }

    #[test]
    fn a_number_claimed_twice_names_both_files_and_lines() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.toml",
            "[business]\nname = \"A\"\nphone = \"+15035550142\"\n",
        );
        write(
            dir.path(),
            "b.toml",
            "[business]\nname = \"B\"\n\nnumbers = [\"+15035550142\"]\n",
        );
        let err = load_businesses(dir.path(), 1).unwrap_err().to_string();
        assert!(err.contains("b.toml:4:"), "{err}");
        assert!(err.contains("a.toml:3:"), "{err}");
        assert!(err.contains("+15035550142"), "{err}");
    }

    #[test]
    fn in_a_directory_a_business_no_number_reaches_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.toml",
            "[business]\nname = \"A\"\nphone = \"+15035550142\"\n",
        );
        write(dir.path(), "b.toml", "[business]\nname = \"B\"\n");
        let err = load_businesses(dir.path(), 1).unwrap_err().to_string();
        assert!(
            err.contains("b.toml:1:1: business.phone: no number reaches"),
            "{err}"
        );
        assert!(!err.contains("a.toml"), "{err}");
    }

    #[test]
    fn every_bad_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.toml",
            "[business]\nname = \"A\"\nkind = \"plumber\"\n",
        );
        write(
            dir.path(),
            "b.toml",
            "[business]\nname = \"B\"\nnumbers = [\"555\"]\n",
        );
        let err = load_businesses(dir.path(), 1).unwrap_err().to_string();
        assert!(
            err.contains("a.toml:3:") && err.contains("business.kind"),
            "{err}"
        );
        assert!(
            err.contains("b.toml:") && err.contains("business.numbers[0]"),
            "{err}"
        );
    }

    #[test]
    fn twilio_from_number_is_the_number_of_a_single_file_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let default = E164::parse("+15035550100").unwrap();
        write(dir.path(), "business.toml", "[business]\nname = \"A\"\n");
        let file = dir.path().join("business.toml");
        let directory = BusinessDirectory::load_with_default_phone(&file, Some(default.clone())).unwrap();
        let phone = |d: &BusinessDirectory| d.current().single().unwrap().business.phone.clone();
        assert_eq!(phone(&directory), Some(default.clone()));
        // A reload keeps applying it; a phone of the file's own wins.
        directory.reload().unwrap();
        assert_eq!(phone(&directory), Some(default.clone()));
        write(
            dir.path(),
            "business.toml",
            "[business]\nname = \"A\"\nphone = \"+15035550142\"\n",
        );
        directory.reload().unwrap();
        assert_eq!(phone(&directory).unwrap().as_str(), "+15035550142");
        // A directory's businesses each claim their own numbers.
        let many = tempfile::tempdir().unwrap();
        write(
            many.path(),
            "a.toml",
            "[business]\nname = \"A\"\nphone = \"+15035550142\"\n",
        );
        let directory = BusinessDirectory::load_with_default_phone(many.path(), Some(default)).unwrap();
        assert_eq!(phone(&directory).unwrap().as_str(), "+15035550142");
    }

    #[test]
    fn console_fragments_survive_a_reload_and_one_the_file_no_longer_fits_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("business.toml");
        write(dir.path(), "business.toml", "[business]\nname = \"Old\"\n");
        let directory = BusinessDirectory::load(&file).unwrap();
        let tone = Fragment {
            key: "tone".into(),
            value: "\"casual\"".into(),
            updated_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            updated_by: super::super::fragments::CONSOLE_EDITOR.into(),
        };
        let bad = Fragment {
            key: "tone".into(),
            value: "\"grumpy\"".into(),
            ..tone.clone()
        };
        assert!(directory.install("business", vec![bad]).unwrap().is_err());
        assert_eq!(directory.current().version, 1, "a refused save changes nothing");
        directory.install("business", vec![tone]).unwrap().unwrap();
        assert_eq!(directory.current().version, 2);
        let tone_now = |d: &BusinessDirectory| d.business("business").unwrap().assistant.tone.as_str();
        assert_eq!(tone_now(&directory), "casual");

        write(dir.path(), "business.toml", "[business]\nname = \"New\"\n");
        directory.reload().unwrap();
        assert_eq!(directory.business("business").unwrap().business.name, "New");
        assert_eq!(tone_now(&directory), "casual");

        // Saving no fragments returns to the file's own settings.
        directory.install("business", Vec::new()).unwrap().unwrap();
        assert_eq!(tone_now(&directory), "friendly");
        directory.reload().unwrap();
        assert_eq!(tone_now(&directory), "friendly");

        // A stored setting this build no longer accepts is reported at
        // start, and the file's value serves; reloads still work.
        let stale = Fragment {
            key: "retired_setting".into(),
            value: "1".into(),
            updated_at: chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
            updated_by: "owner console".into(),
        };
        let problems =
            directory.apply_stored_fragments(HashMap::from([("business".to_string(), vec![stale])]));
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].to_string().contains("retired_setting"),
            "{}",
            problems[0]
        );
        assert_eq!(tone_now(&directory), "friendly");
        directory.reload().unwrap();
    }

    #[test]
    fn a_bad_reload_keeps_the_old_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("business.toml");
        write(dir.path(), "business.toml", "[business]\nname = \"Old\"\n");
        let directory = BusinessDirectory::load(&file).unwrap();
        write(
            dir.path(),
            "business.toml",
            "[business]\nname = \"New\"\nkind = 3\n",
        );
        let err = directory.reload().unwrap_err().to_string();
        assert!(err.contains("business.toml:3:"), "{err}");
        assert_eq!(directory.business("business").unwrap().business.name, "Old");
        write(dir.path(), "business.toml", "[business]\nname = \"New\"\n");
        directory.reload().unwrap();
        assert_eq!(directory.business("business").unwrap().business.name, "New");
        assert_eq!(directory.current().version, 2);
    }
}
