//! Files from the Hugging Face Hub, through the `hf-hub` crate's blocking client
//! ([`hf_hub::HFClientSync`]) and the cache layout `huggingface_hub` (Python) uses, so a cache
//! filled by either is reused by the other:
//!
//! ```text
//! <hub cache>/datasets--<owner>--<name>/
//!     blobs/<etag>                                  file contents (etag = sha256 for LFS files)
//!     refs/<revision>                               the commit a branch/tag/ref points to;
//!                                                   refs/convert/parquet -> refs/refs/convert/parquet
//!     snapshots/<commit>/<path in repo>             symlink -> ../../blobs/<etag>
//!     .no_exist/<commit>/<path in repo>             empty: the Hub said 404 for this file
//! ```
//!
//! Environment, as `huggingface_hub` reads it: `HF_ENDPOINT` (default `https://huggingface.co`),
//! `HF_TOKEN` (else `$HF_HOME/token`), `HF_HUB_CACHE` (else `$HF_HOME/hub`), `HF_HOME` (else
//! `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`), `HF_HUB_OFFLINE` (`1`, `ON`,
//! `YES`, `TRUE`, any case). `hf-hub` 1.0 ignores `HF_HUB_OFFLINE`; offline resolution is done
//! here exactly as `huggingface_hub.try_to_load_from_cache` does it ([`lookup_cached`]).
//!
//! Online, one file costs `HEAD {endpoint}/datasets/{repo}/resolve/{revision}/{path}` (revision
//! percent-encoded as one segment: `refs%2Fconvert%2Fparquet`; headers `x-repo-commit`,
//! `x-linked-etag`/`etag`, `x-linked-size`/`content-length`, relative redirects followed) and a
//! `GET` of the same URL (absolute redirects followed, e.g. to a CDN), written to
//! `blobs/<etag>.incomplete` and renamed. A glob over a repository's files costs
//! `GET {endpoint}/api/datasets/{repo}/tree/{revision}/{dir}?recursive=true`. Freshly downloaded
//! blobs whose etag is a sha256 (LFS files) are checked against it, which catches truncated
//! bodies that HTTP alone did not.
//!
//! Submodules: [`registry`] (the data sets of `datasets/hub.toml`), [`parquet`] (reading their
//! parquet files), [`prepare`] (`varattn data prepare` for them).
pub mod parquet;
pub mod prepare;
pub mod registry;

pub use crate::provenance::sha256_file;
use registry::glob_match;
use anyhow::{anyhow, bail, Result};
#[cfg(feature = "hub")]
use anyhow::Context;
#[cfg(feature = "hub")]
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The default Hub endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Hub settings, normally from the environment ([`HubSettings::from_env`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSettings {
    /// Base URL, without a trailing slash.
    pub endpoint: String,
    /// Token sent as `Authorization: Bearer` (`None`: hf-hub's own lookup of the token file).
    pub token: Option<String>,
    /// The hub cache directory (the folder holding `datasets--owner--name`).
    pub cache_dir: PathBuf,
    /// Local files only.
    pub offline: bool,
}

/// `huggingface_hub`'s truth test for boolean environment variables: `1`, `ON`, `YES`, `TRUE`
/// in any case.
pub fn env_flag(value: Option<&str>) -> bool {
    value.is_some_and(|v| matches!(v.trim().to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `HF_HOME`, else `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home() -> PathBuf {
    if let Some(h) = var("HF_HOME") {
        return PathBuf::from(h);
    }
    if let Some(x) = var("XDG_CACHE_HOME") {
        return PathBuf::from(x).join("huggingface");
    }
    PathBuf::from(var("HOME").unwrap_or_else(|| "/tmp".into())).join(".cache").join("huggingface")
}

/// `HF_HUB_CACHE`, else (legacy) `HUGGINGFACE_HUB_CACHE`, else `<hf_home>/hub`.
pub fn hub_cache_dir() -> PathBuf {
    var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")).map(PathBuf::from).unwrap_or_else(|| hf_home().join("hub"))
}

impl HubSettings {
    /// Reads `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_CACHE`/`HF_HOME` and `HF_HUB_OFFLINE`.
    pub fn from_env() -> Self {
        Self {
            endpoint: var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into()).trim_end_matches('/').to_string(),
            token: var("HF_TOKEN"),
            cache_dir: hub_cache_dir(),
            offline: env_flag(std::env::var("HF_HUB_OFFLINE").ok().as_deref()),
        }
    }
}

/// The cache folder of a dataset repository: `datasets--owner--name`.
pub fn repo_folder_name(repo_id: &str) -> String {
    std::iter::once("datasets").chain(repo_id.split('/')).collect::<Vec<_>>().join("--")
}

/// A full 40-hex-digit commit hash.
pub fn is_commit_hash(revision: &str) -> bool {
    revision.len() == 40 && revision.chars().all(|c| c.is_ascii_hexdigit())
}

/// The answer of the cache for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLookup {
    /// `snapshots/<commit>/<path>` exists.
    Found(PathBuf),
    /// The Hub said 404 for this file at this commit (a `.no_exist` marker).
    KnownMissing { commit: String },
    /// Not in the cache; `commit` is the revision's commit when the ref is cached.
    Missing { commit: Option<String> },
}

/// The commit `revision` points to in the cache: itself when it is a commit hash, else the
/// content of `refs/<revision>` (e.g. `refs/refs/convert/parquet`).
pub fn cached_commit(cache_dir: &Path, repo_id: &str, revision: &str) -> Option<String> {
    if is_commit_hash(revision) {
        return Some(revision.to_string());
    }
    let ref_file = cache_dir.join(repo_folder_name(repo_id)).join("refs").join(revision);
    std::fs::read_to_string(ref_file).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Offline lookup of `path` at `revision`, as `huggingface_hub.try_to_load_from_cache`:
/// revision -> commit through `refs/`, then `.no_exist/<commit>/<path>`, then
/// `snapshots/<commit>/<path>`. Never touches the network.
pub fn lookup_cached(cache_dir: &Path, repo_id: &str, revision: &str, path: &str) -> CacheLookup {
    let repo = cache_dir.join(repo_folder_name(repo_id));
    let Some(commit) = cached_commit(cache_dir, repo_id, revision) else {
        return CacheLookup::Missing { commit: None };
    };
    if repo.join(".no_exist").join(&commit).join(path).is_file() {
        return CacheLookup::KnownMissing { commit };
    }
    let file = repo.join("snapshots").join(&commit).join(path);
    if file.is_file() {
        CacheLookup::Found(file)
    } else {
        CacheLookup::Missing { commit: Some(commit) }
    }
}

/// [`lookup_cached`] as a result: the cached file, or an error naming the missing file, the
/// place it was looked for and how to fill the cache.
pub fn resolve_offline(cache_dir: &Path, repo_id: &str, revision: &str, path: &str) -> Result<PathBuf> {
    let repo = cache_dir.join(repo_folder_name(repo_id));
    match lookup_cached(cache_dir, repo_id, revision, path) {
        CacheLookup::Found(p) => Ok(p),
        CacheLookup::KnownMissing { commit } => bail!(
            "HF_HUB_OFFLINE: {path} does not exist in dataset {repo_id} at revision {revision} (commit {commit}; the cache holds the Hub's 404 as {})",
            repo.join(".no_exist").join(&commit).join(path).display()
        ),
        CacheLookup::Missing { commit: None } => bail!(
            "HF_HUB_OFFLINE: {path} of dataset {repo_id} is not in the cache: no {} (revision {revision} was never resolved here). \
             Download it once with internet (unset HF_HUB_OFFLINE), or point HF_HUB_CACHE / HF_HOME at a cache that has it",
            repo.join("refs").join(revision).display()
        ),
        CacheLookup::Missing { commit: Some(c) } => bail!(
            "HF_HUB_OFFLINE: {path} of dataset {repo_id} (revision {revision} = commit {c}) is not in the cache: no {}. \
             Download it once with internet (unset HF_HUB_OFFLINE), or point HF_HUB_CACHE / HF_HOME at a cache that has it",
            repo.join("snapshots").join(&c).join(path).display()
        ),
    }
}

/// Files of the cached snapshot of `revision` whose path in the repository matches `pattern`
/// (sorted); an error when the revision is not cached.
pub fn list_cached(cache_dir: &Path, repo_id: &str, revision: &str, pattern: &str) -> Result<Vec<String>> {
    let repo = cache_dir.join(repo_folder_name(repo_id));
    let commit = cached_commit(cache_dir, repo_id, revision).ok_or_else(|| {
        anyhow!(
            "HF_HUB_OFFLINE: dataset {repo_id} revision {revision} is not in the cache (no {}); download it once with internet",
            repo.join("refs").join(revision).display()
        )
    })?;
    let root = repo.join("snapshots").join(&commit);
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(&root) {
                let rel = rel.to_string_lossy().replace('\\', "/");
                if glob_match(pattern, &rel) {
                    out.push(rel);
                }
            }
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("HF_HUB_OFFLINE: no file of dataset {repo_id} matching {pattern} in the cached snapshot {}", root.display());
    }
    Ok(out)
}

#[cfg(feature = "hub")]
/// The directory part of a glob before its first wildcard segment (`data/validation-*.parquet`
/// -> `data`), the folder to list.
fn literal_prefix(pattern: &str) -> Option<String> {
    let segs: Vec<&str> = pattern.split('/').collect();
    let lit: Vec<&str> = segs.iter().take_while(|s| !s.contains(['*', '?'])).copied().collect();
    let lit = &lit[..lit.len().min(segs.len().saturating_sub(1))];
    (!lit.is_empty()).then(|| lit.join("/"))
}

/// The hf-hub client.
#[cfg(feature = "hub")]
type Client = hf_hub::HFClientSync;
/// A build without the `hub` feature has no client: this type has no values.
#[cfg(not(feature = "hub"))]
enum Client {}

/// Hub access: the hf-hub client online, the cache alone offline (and in a build without the
/// `hub` feature, which leaves out hf-hub and its HTTP stack).
pub struct Hub {
    pub settings: HubSettings,
    client: Option<Client>,
    #[cfg_attr(not(feature = "hub"), allow(dead_code))]
    progress: bool,
}

#[cfg(feature = "hub")]
fn connect(settings: &HubSettings) -> Result<Client> {
    let mut b = hf_hub::HFClient::builder().endpoint(settings.endpoint.clone()).cache_dir(settings.cache_dir.clone());
    if let Some(t) = &settings.token {
        b = b.token(t.clone());
    }
    b.build_sync().map_err(|e| anyhow!("setting up the Hub client for {}: {e}", settings.endpoint))
}

#[cfg(not(feature = "hub"))]
fn connect(settings: &HubSettings) -> Result<Client> {
    bail!(
        "this build of varattn-lab has no Hub client (built without its `hub` feature), so it cannot reach {}; \
         set HF_HUB_OFFLINE=1 to read the cache {} alone, or build with the default features",
        settings.endpoint,
        settings.cache_dir.display()
    )
}

impl Hub {
    /// A client for `settings` (none is built offline). `progress`: a byte progress bar per
    /// download on a terminal.
    pub fn new(settings: HubSettings, progress: bool) -> Result<Self> {
        let client = if settings.offline { None } else { Some(connect(&settings)?) };
        Ok(Self { settings, client, progress })
    }

    /// [`Hub::new`] with [`HubSettings::from_env`].
    pub fn from_env(progress: bool) -> Result<Self> {
        Self::new(HubSettings::from_env(), progress)
    }

    /// The local path of `path` in dataset `repo_id` at `revision`: from the cache offline,
    /// else downloaded into the cache when it is not there or changed (hf-hub compares etags).
    pub fn fetch(&self, repo_id: &str, revision: &str, path: &str) -> Result<PathBuf> {
        let Some(client) = &self.client else {
            return resolve_offline(&self.settings.cache_dir, repo_id, revision, path);
        };
        self.fetch_online(client, repo_id, revision, path)
    }

    #[cfg(feature = "hub")]
    fn fetch_online(&self, client: &Client, repo_id: &str, revision: &str, path: &str) -> Result<PathBuf> {
        let (owner, name) = hf_hub::split_id(repo_id);
        self.download(client.dataset(owner, name), &repo_folder_name(repo_id), repo_id, revision, path)
    }

    #[cfg(not(feature = "hub"))]
    fn fetch_online(&self, client: &Client, _: &str, _: &str, _: &str) -> Result<PathBuf> {
        match *client {}
    }

    /// Downloads `path` of `repo` (cache folder `folder`) into the cache, with a progress bar,
    /// and checks a fresh LFS blob against its sha256 etag.
    #[cfg(feature = "hub")]
    fn download<T: hf_hub::RepoType>(&self, repo: hf_hub::HFRepositorySync<T>, folder: &str, repo_id: &str, revision: &str, path: &str) -> Result<PathBuf> {
        let blobs_dir = self.settings.cache_dir.join(folder).join("blobs");
        let blobs_before = list_names(&blobs_dir);
        let handler = ProgressBridge::new(self.progress, path);
        let result = repo
            .download_file()
            .filename(path.to_string())
            .revision(revision.to_string())
            .progress(hf_hub::progress::Progress::new(handler.clone()))
            .send();
        handler.finish();
        let snapshot = result.map_err(|e| self.explain(e, repo_id, revision, path))?;
        verify_fresh_blob(&snapshot, &blobs_before)?;
        Ok(snapshot)
    }

    /// The local path of `path` in *model* repository `repo_id` at `revision` (e.g. pretrained
    /// backbone weights), cached under `models--owner--name` as huggingface_hub does; offline,
    /// from the cache alone.
    pub fn fetch_model(&self, repo_id: &str, revision: &str, path: &str) -> Result<PathBuf> {
        let model_folder = format!("models--{}", repo_id.replace('/', "--"));
        let Some(client) = &self.client else {
            let folder = self.settings.cache_dir.join(&model_folder);
            let commit = if is_commit_hash(revision) {
                Some(revision.to_string())
            } else {
                std::fs::read_to_string(folder.join("refs").join(revision)).ok().map(|s| s.trim().to_string())
            };
            let file = commit.map(|c| folder.join("snapshots").join(c).join(path));
            return match file {
                Some(f) if f.is_file() => Ok(f),
                _ => bail!(
                    "HF_HUB_OFFLINE: {path} of model {repo_id} (revision {revision}) is not in the cache {}; download it once with internet (unset HF_HUB_OFFLINE)",
                    folder.display()
                ),
            };
        };
        self.fetch_model_online(client, &model_folder, repo_id, revision, path)
    }

    #[cfg(feature = "hub")]
    fn fetch_model_online(&self, client: &Client, model_folder: &str, repo_id: &str, revision: &str, path: &str) -> Result<PathBuf> {
        let (owner, name) = hf_hub::split_id(repo_id);
        self.download(client.model(owner, name), model_folder, repo_id, revision, path)
    }

    #[cfg(not(feature = "hub"))]
    fn fetch_model_online(&self, client: &Client, _: &str, _: &str, _: &str, _: &str) -> Result<PathBuf> {
        match *client {}
    }

    /// The files of dataset `repo_id` at `revision` matching `pattern` (sorted): the Hub's tree
    /// listing online, the cached snapshot offline.
    pub fn list(&self, repo_id: &str, revision: &str, pattern: &str) -> Result<Vec<String>> {
        let Some(client) = &self.client else {
            return list_cached(&self.settings.cache_dir, repo_id, revision, pattern);
        };
        self.list_online(client, repo_id, revision, pattern)
    }

    #[cfg(not(feature = "hub"))]
    fn list_online(&self, client: &Client, _: &str, _: &str, _: &str) -> Result<Vec<String>> {
        match *client {}
    }

    #[cfg(feature = "hub")]
    fn list_online(&self, client: &Client, repo_id: &str, revision: &str, pattern: &str) -> Result<Vec<String>> {
        let (owner, name) = hf_hub::split_id(repo_id);
        let entries = client
            .dataset(owner, name)
            .list_tree()
            .revision(revision.to_string())
            .maybe_path_in_repo(literal_prefix(pattern))
            .recursive(true)
            .send()
            .map_err(|e| self.explain(e, repo_id, revision, pattern))?;
        let mut files: Vec<String> = entries
            .into_iter()
            .filter_map(|e| match e {
                hf_hub::repository::RepoTreeEntry::File { path, .. } => Some(path),
                _ => None,
            })
            .filter(|p| glob_match(pattern, p))
            .collect();
        files.sort();
        if files.is_empty() {
            bail!("no file of dataset {repo_id} at revision {revision} matches {pattern} ({})", self.settings.endpoint);
        }
        Ok(files)
    }

    /// An hf-hub error as a message that says what happened and what to do.
    #[cfg(feature = "hub")]
    fn explain(&self, e: hf_hub::HFError, repo_id: &str, revision: &str, path: &str) -> anyhow::Error {
        use hf_hub::HFError as E;
        let ep = &self.settings.endpoint;
        let offline_hint = format!(
            "To work without a network, fill the cache once where the Hub is reachable (`varattn data prepare <name>`, or Python's huggingface_hub) \
             and use it here: HF_HUB_CACHE={} (or HF_HOME) and HF_HUB_OFFLINE=1",
            self.settings.cache_dir.display()
        );
        let status = match &e {
            E::Http { context } => Some(context.status.as_u16()),
            _ => None,
        };
        match &e {
            E::AuthRequired { .. } => anyhow!(
                "{ep}: HTTP 401 (authentication required) for {path} of dataset {repo_id}: the dataset is gated or private, or does not exist. \
                 Set HF_TOKEN to a token that can read it (and accept its terms on the Hub)"
            ),
            E::Forbidden { .. } => anyhow!("{ep}: HTTP 403 (forbidden) for {path} of dataset {repo_id}: HF_TOKEN has no access to it (gated dataset: accept its terms on the Hub)"),
            E::EntryNotFound { .. } | E::RepoNotFound { .. } | E::RevisionNotFound { .. } => anyhow!(
                "{ep}: HTTP 404: {path} not found in dataset {repo_id} at revision {revision} ({e}); the registry datasets/hub.toml may name a file the Hub no longer has"
            ),
            E::Request { source, .. } if source.is_connect() || source.is_timeout() => {
                anyhow!("could not reach the Hub at {ep} (network unreachable or host down) while fetching {path} of dataset {repo_id}: {e}.\n{offline_hint}")
            }
            E::Request { source, .. } if source.is_body() || source.is_decode() => anyhow!(
                "the download of {path} (dataset {repo_id}, revision {revision}) from {ep} was cut off: {e} (truncated body); run the command again to download it again"
            ),
            _ if status == Some(401) => anyhow!("{ep}: HTTP 401 (authentication required) for dataset {repo_id}: set HF_TOKEN to a token that can read it"),
            _ if status == Some(404) => anyhow!("{ep}: HTTP 404: dataset {repo_id} or revision {revision} not found ({path})"),
            _ if status.is_some_and(|s| s >= 500) => anyhow!(
                "{ep}: the Hub answered HTTP {} for {path} of dataset {repo_id} (after retries); try again later.\n{offline_hint}",
                status.unwrap_or(500)
            ),
            E::LocalEntryNotFound { .. } => anyhow!("{path} of dataset {repo_id} is not in the cache {} and the Hub could not be asked: {e}.\n{offline_hint}", self.settings.cache_dir.display()),
            _ => anyhow!("fetching {path} of dataset {repo_id} at revision {revision} from {ep}: {e}"),
        }
    }
}

#[cfg(feature = "hub")]
fn list_names(dir: &Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .map(|it| it.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default()
}

#[cfg(feature = "hub")]
/// After a download: if the snapshot's blob is new and named by a sha256 (the etag of LFS
/// files), check its content against it; on mismatch remove blob and snapshot link and fail.
fn verify_fresh_blob(snapshot: &Path, blobs_before: &HashSet<String>) -> Result<()> {
    let blob = std::fs::canonicalize(snapshot).with_context(|| format!("resolving {}", snapshot.display()))?;
    let etag = blob.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if blobs_before.contains(&etag) || etag.len() != 64 || !etag.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(());
    }
    let actual = sha256_file(&blob)?;
    if actual != etag.to_ascii_lowercase() {
        let received = std::fs::metadata(&blob).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(&blob);
        let _ = std::fs::remove_file(snapshot);
        bail!(
            "the download of {} is corrupt or truncated: its sha256 is {actual} but the Hub's etag says {etag} ({received} bytes received); removed it, run the command again",
            snapshot.display()
        );
    }
    Ok(())
}


/// hf-hub download events -> an indicatif byte bar (shown only on a terminal).
#[cfg(feature = "hub")]
#[derive(Clone)]
struct ProgressBridge {
    bar: Option<indicatif::ProgressBar>,
}

#[cfg(feature = "hub")]
impl ProgressBridge {
    fn new(enabled: bool, name: &str) -> Self {
        let bar = enabled.then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(name.to_string());
            b
        });
        Self { bar }
    }
    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(feature = "hub")]
impl hf_hub::progress::ProgressHandler for ProgressBridge {
    fn on_progress(&self, event: &hf_hub::progress::ProgressEvent) {
        use hf_hub::progress::{DownloadEvent, ProgressEvent};
        let Some(bar) = &self.bar else { return };
        match event {
            ProgressEvent::Download(DownloadEvent::Start { total_bytes, .. }) => bar.set_length(*total_bytes),
            ProgressEvent::Download(DownloadEvent::Progress { files }) => {
                if let Some(f) = files.first() {
                    bar.set_position(f.bytes_completed);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_and_flags_follow_huggingface_hub() {
        assert_eq!(repo_folder_name("bbaaaa/iwslt14-de-en"), "datasets--bbaaaa--iwslt14-de-en");
        for v in ["1", "on", "YES", "True"] {
            assert!(env_flag(Some(v)), "{v}");
        }
        for v in ["0", "", "false", "no"] {
            assert!(!env_flag(Some(v)), "{v}");
        }
        assert!(!env_flag(None));
        #[cfg(feature = "hub")]
        {
            assert_eq!(literal_prefix("data/validation-*.parquet").as_deref(), Some("data"));
            assert_eq!(literal_prefix("de-en/train/0000.parquet").as_deref(), Some("de-en/train"));
            assert_eq!(literal_prefix("*.parquet"), None);
        }
    }

    #[test]
    fn offline_lookup_resolves_refs_and_no_exist() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path();
        let repo = cache.join("datasets--o--n");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        std::fs::create_dir_all(repo.join("refs/refs/convert")).unwrap();
        std::fs::write(repo.join("refs/refs/convert/parquet"), commit).unwrap();
        std::fs::create_dir_all(repo.join("snapshots").join(commit).join("a")).unwrap();
        std::fs::write(repo.join("snapshots").join(commit).join("a/x.parquet"), b"x").unwrap();
        std::fs::create_dir_all(repo.join(".no_exist").join(commit).join("a")).unwrap();
        std::fs::write(repo.join(".no_exist").join(commit).join("a/gone.parquet"), b"").unwrap();
        let rev = "refs/convert/parquet";
        assert_eq!(lookup_cached(cache, "o/n", rev, "a/x.parquet"), CacheLookup::Found(repo.join("snapshots").join(commit).join("a/x.parquet")));
        assert_eq!(lookup_cached(cache, "o/n", commit, "a/x.parquet"), CacheLookup::Found(repo.join("snapshots").join(commit).join("a/x.parquet")));
        assert_eq!(lookup_cached(cache, "o/n", rev, "a/gone.parquet"), CacheLookup::KnownMissing { commit: commit.into() });
        assert_eq!(lookup_cached(cache, "o/n", "main", "a/x.parquet"), CacheLookup::Missing { commit: None });
        let err = resolve_offline(cache, "o/n", rev, "a/y.parquet").unwrap_err().to_string();
        assert!(err.contains("a/y.parquet") && err.contains(commit), "{err}");
        assert_eq!(list_cached(cache, "o/n", rev, "a/*.parquet").unwrap(), vec!["a/x.parquet".to_string()]);
    }
}
