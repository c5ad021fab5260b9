//! The Hugging Face Hub data sets without internet:
//! * a cache the test builds in the huggingface_hub layout (datasets--owner--name/{blobs, refs,
//!   snapshots}) holding small parquet files with the Hub's schemas, read with HF_HUB_OFFLINE=1;
//! * a loopback HTTP server speaking the part of the Hub's API that hf-hub uses (file resolve
//!   with commit / etag / size headers and a redirect to a "CDN", the tree listing), so that
//!   `varattn data prepare` runs its real download path, writes the cache and follows revisions;
//!   and its failures: 404, 401, 500, truncated body, corrupt parquet, schema mismatch,
//!   network unreachable.
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use varattn_lab::data::hub::{Hub, HubSettings};
use varattn_lab::data::hub::parquet::{write_translation_parquet, write_vqa_v2_parquet, VqaV2Example};
use varattn_lab::provenance::sha256_hex;
use varattn_lab::report::tables;

mod common;
use common::put_cached;

const COMMIT_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const COMMIT_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const PARQUET_REF: &str = "refs/convert/parquet";

// ---------------------------------------------------------------------------
// Fixtures

fn pairs(prefix: &str, n: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("{prefix} Satz Nummer {i} ist hier."), format!("{prefix} sentence number {i} is here."))).collect()
}

fn translation_bytes(column: &str, langs: (&str, &str), rows: &[(String, String)]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("f.parquet");
    write_translation_parquet(&p, column, langs, rows).unwrap();
    std::fs::read(p).unwrap()
}

/// The iwslt14-de-en files (de-en/{train,validation,test}/0000.parquet) with 6 / 2 / 2 rows.
fn iwslt14_files(tag: &str) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for (split, n) in [("train", 6), ("validation", 2), ("test", 2)] {
        m.insert(format!("de-en/{split}/0000.parquet"), translation_bytes("translation", ("de", "en"), &pairs(&format!("{tag}-{split}"), n)));
    }
    m
}

fn vqa_rows(first_id: i64, n: usize, images: bool) -> Vec<VqaV2Example> {
    (0..n as i64)
        .map(|i| VqaV2Example {
            question_id: first_id + i,
            image_id: 1000 + i,
            question: format!("What color is thing {i}?"),
            answers: (0..10).map(|k| if k < 8 { "red".to_string() } else { format!("blue{i}") }).collect(),
            answer_confidences: vec!["yes".into(); 10],
            multiple_choice_answer: Some("red".into()),
            question_type: Some("what color is the".into()),
            answer_type: Some("other".into()),
            image: images.then(|| vec![0xff, 0xd8, i as u8]),
        })
        .collect()
}

fn vqa_bytes(rows: &[VqaV2Example], images: bool) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.parquet");
    write_vqa_v2_parquet(&p, rows, images).unwrap();
    std::fs::read(p).unwrap()
}

// ---------------------------------------------------------------------------
// Running the binary

struct Env {
    _dir: tempfile::TempDir,
    hf_home: PathBuf,
    hub_cache: PathBuf,
    data: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let e = Env { hf_home: dir.path().join("hf-home"), hub_cache: dir.path().join("hub-cache"), data: dir.path().join("varattn"), _dir: dir };
    std::fs::create_dir_all(&e.hf_home).unwrap();
    e
}

/// `varattn data prepare <name> --cache <data>` with a clean HF_* environment plus `vars`.
fn prepare(e: &Env, name: &str, vars: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_varattn"));
    c.args(["data", "prepare", name, "--cache"]).arg(&e.data);
    for v in ["HF_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH", "XDG_CACHE_HOME"] {
        c.env_remove(v);
    }
    c.env("HF_HOME", &e.hf_home).env("HF_HUB_CACHE", &e.hub_cache);
    for (k, v) in vars {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// `varattn train --preset smoke` of the row `config` into `run`, reading the Hub cache offline.
fn train_offline(e: &Env, config: &Path, run: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_varattn"))
        .args(["train", "--preset", "smoke", "--quiet", "--config"])
        .arg(config)
        .arg("--out")
        .arg(run)
        .arg("--cache")
        .arg(&e.data)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HUB_CACHE", &e.hub_cache)
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn ok(o: &Output) -> (String, String) {
    let (out, err) = text(o);
    assert!(o.status.success(), "failed:\nstdout:\n{out}\nstderr:\n{err}");
    (out, err)
}

fn failed(o: &Output) -> String {
    let (out, err) = text(o);
    assert!(!o.status.success(), "should have failed:\nstdout:\n{out}\nstderr:\n{err}");
    err
}

/// A port nothing listens on.
fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

// ---------------------------------------------------------------------------
// The loopback Hub

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    None,
    /// Every resolve / tree request answers this status.
    Status(u16),
    /// The CDN sends Content-Length but only half the body, then closes.
    TruncatedBody,
    /// The CDN sends half the body without Content-Length (looks complete to HTTP).
    ShortBodyNoLength,
}

struct Repo {
    commit: String,
    revisions: Vec<String>,
    files: BTreeMap<String, Vec<u8>>,
    token: Option<String>,
}

struct State {
    repos: HashMap<String, Repo>,
    fault: Fault,
    log: Vec<String>,
}

struct FakeHub {
    url: String,
    state: Arc<Mutex<State>>,
}

impl FakeHub {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State { repos: HashMap::new(), fault: Fault::None, log: vec![] }));
        let (st, base) = (state.clone(), url.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (st, base) = (st.clone(), base.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &st, &base);
                });
            }
        });
        Self { url, state }
    }
    fn repo(&self, id: &str, commit: &str, revisions: &[&str], files: BTreeMap<String, Vec<u8>>, token: Option<&str>) {
        self.state.lock().unwrap().repos.insert(
            id.into(),
            Repo { commit: commit.into(), revisions: revisions.iter().map(|s| s.to_string()).collect(), files, token: token.map(str::to_string) },
        );
    }
    fn fault(&self, f: Fault) {
        self.state.lock().unwrap().fault = f;
    }
    fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }
    fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        302 => "Found",
        401 => "Unauthorized",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn respond(s: &mut TcpStream, code: u16, headers: &[(String, String)], body: &[u8], head: bool, content_length: bool) -> std::io::Result<()> {
    let mut h = format!("HTTP/1.1 {code} {}\r\nConnection: close\r\n", reason(code));
    if content_length {
        h.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    s.write_all(h.as_bytes())?;
    if !head {
        s.write_all(body)?;
    }
    s.flush()
}

fn serve(stream: TcpStream, state: &Mutex<State>, base: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
    let mut auth = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                auth = Some(v.trim().to_string());
            }
        }
    }
    let mut s = stream;
    let head = method == "HEAD";
    let path = target.split('?').next().unwrap_or("").to_string();
    let segs: Vec<String> = path.trim_start_matches('/').split('/').map(percent_decode).collect();
    let mut st = state.lock().unwrap();
    st.log.push(format!("{method} {target}"));
    let fault = st.fault;
    let json = |v: serde_json::Value| v.to_string().into_bytes();
    // the CDN: content by sha256
    if segs.first().map(String::as_str) == Some("cdn") {
        let sha = segs.get(1).cloned().unwrap_or_default();
        let body = st.repos.values().flat_map(|r| r.files.values()).find(|b| sha256_hex(b) == sha).cloned();
        drop(st);
        return match body {
            None => respond(&mut s, 404, &[], b"not found", head, true),
            Some(b) => match fault {
                Fault::TruncatedBody => {
                    let h = format!("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: {}\r\n\r\n", b.len());
                    s.write_all(h.as_bytes())?;
                    s.write_all(&b[..b.len() / 2])?;
                    s.flush()
                }
                Fault::ShortBodyNoLength => respond(&mut s, 200, &[], &b[..b.len() / 2], head, false),
                _ => respond(&mut s, 200, &[], &b, head, true),
            },
        };
    }
    let (repo_id, rev, rest, is_tree) = if segs.len() >= 6 && segs[0] == "datasets" && segs[3] == "resolve" {
        (format!("{}/{}", segs[1], segs[2]), segs[4].clone(), segs[5..].join("/"), false)
    } else if segs.len() >= 6 && segs[0] == "api" && segs[1] == "datasets" && segs[4] == "tree" {
        (format!("{}/{}", segs[2], segs[3]), segs[5].clone(), segs[6..].join("/"), true)
    } else {
        drop(st);
        return respond(&mut s, 404, &[], b"no such endpoint", head, true);
    };
    if let Fault::Status(code) = fault {
        drop(st);
        return respond(&mut s, code, &[], &json(serde_json::json!({"error": "injected"})), head, true);
    }
    let Some(repo) = st.repos.get(&repo_id) else {
        drop(st);
        // the real Hub answers 401 for a repository that does not exist, to anonymous callers
        return respond(&mut s, 401, &[("X-Error-Code".into(), "RepoNotFound".into())], &json(serde_json::json!({"error": "Repository not found"})), head, true);
    };
    if let Some(t) = &repo.token {
        if auth.as_deref() != Some(&format!("Bearer {t}")) {
            drop(st);
            return respond(&mut s, 401, &[], &json(serde_json::json!({"error": "Invalid credentials in Authorization header"})), head, true);
        }
    }
    if !(repo.revisions.contains(&rev) || rev == repo.commit) {
        drop(st);
        return respond(&mut s, 404, &[("X-Error-Code".into(), "RevisionNotFound".into())], &json(serde_json::json!({"error": "Revision not found"})), head, true);
    }
    let commit = repo.commit.clone();
    if is_tree {
        let entries: Vec<serde_json::Value> = repo
            .files
            .iter()
            .filter(|(p, _)| rest.is_empty() || p.starts_with(&format!("{rest}/")))
            .map(|(p, b)| serde_json::json!({"type": "file", "oid": sha256_hex(b)[..40].to_string(), "size": b.len(), "path": p}))
            .collect();
        drop(st);
        return respond(&mut s, 200, &[("Content-Type".into(), "application/json".into())], &json(serde_json::Value::Array(entries)), head, true);
    }
    let Some(bytes) = repo.files.get(&rest) else {
        drop(st);
        return respond(
            &mut s,
            404,
            &[("X-Repo-Commit".into(), commit), ("X-Error-Code".into(), "EntryNotFound".into())],
            &json(serde_json::json!({"error": "Entry not found"})),
            head,
            true,
        );
    };
    let sha = sha256_hex(bytes);
    let size = bytes.len();
    drop(st);
    // an LFS file: 302 to the CDN with the linked etag (its sha256) and size, as the Hub does
    respond(
        &mut s,
        302,
        &[
            ("X-Repo-Commit".into(), commit),
            ("X-Linked-Etag".into(), format!("\"{sha}\"")),
            ("X-Linked-Size".into(), size.to_string()),
            ("ETag".into(), format!("\"{}\"", &sha[..40])),
            ("Location".into(), format!("{base}/cdn/{sha}")),
        ],
        b"",
        head,
        true,
    )
}

// ---------------------------------------------------------------------------
// Offline: the cache fixture

#[test]
fn offline_cache_in_the_huggingface_hub_layout_is_read_with_hf_hub_offline() {
    let e = env();
    let files = iwslt14_files("off");
    for (path, bytes) in &files {
        put_cached(&e.hub_cache, "bbaaaa/iwslt14-de-en", PARQUET_REF, COMMIT_A, path, bytes);
    }
    // the endpoint is unreachable: offline must not need it
    let (out, err) = ok(&prepare(&e, "iwslt14-de-en", &[("HF_HUB_OFFLINE", "1"), ("HF_ENDPOINT", &closed_port_url())]));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["train  6", "valid  2", "test  2"], "{out}");
    // the ref file of refs/convert/parquet sits at refs/refs/convert/parquet, as huggingface_hub writes it
    assert!(e.hub_cache.join("datasets--bbaaaa--iwslt14-de-en/refs/refs/convert/parquet").is_file());
    // fixtures are smaller than the real set: a warning naming both numbers, not an error
    assert!(err.contains("iwslt14-de-en train: 6 rows") && err.contains("160239"), "{err}");
    let dir = e.data.join("iwslt14-de-en");
    let de = std::fs::read_to_string(dir.join("train.de")).unwrap();
    let en = std::fs::read_to_string(dir.join("train.en")).unwrap();
    assert_eq!(de.lines().next(), Some("off-train Satz Nummer 0 ist hier."));
    assert_eq!(en.lines().nth(5), Some("off-train sentence number 5 is here."));
    let corpus = varattn_lab::data::hub::prepare::load_translation_corpus("iwslt14-de-en", &e.data, false).unwrap();
    assert_eq!((corpus.train.len(), corpus.valid.len(), corpus.test.len()), (6, 2, 2));
    assert_eq!(corpus.test[1].tgt, "off-test sentence number 1 is here.");

    // a file missing from the cache: an error naming it and where it was looked for
    let link = e.hub_cache.join("datasets--bbaaaa--iwslt14-de-en/snapshots").join(COMMIT_A).join("de-en/test/0000.parquet");
    std::fs::remove_file(&link).unwrap();
    let err = failed(&prepare(&e, "iwslt14-de-en", &[("HF_HUB_OFFLINE", "1")]));
    assert!(err.contains("HF_HUB_OFFLINE") && err.contains("de-en/test/0000.parquet") && err.contains(&link.display().to_string()), "{err}");
    // a revision never resolved here
    let e2 = env();
    let err = failed(&prepare(&e2, "iwslt14-de-en", &[("HF_HUB_OFFLINE", "true")]));
    assert!(err.contains("refs/refs/convert/parquet") && err.contains("de-en/train/0000.parquet"), "{err}");
}

#[test]
fn offline_wmt17_reads_english_to_german_and_vqa_reads_shards_by_pattern() {
    let e = env();
    let rows = vec![("Ein Haus.".to_string(), "A house.".to_string()), ("Zwei  Bäume.".into(), "Two\ttrees.".into())];
    for f in ["train-00000-of-00004", "train-00001-of-00004", "train-00002-of-00004", "train-00003-of-00004", "validation-00000-of-00001", "test-00000-of-00001"] {
        put_cached(&e.hub_cache, "wmt/wmt17", "main", COMMIT_A, &format!("de-en/{f}.parquet"), &translation_bytes("translation", ("de", "en"), &rows));
    }
    let (out, _) = ok(&prepare(&e, "wmt17-de-en", &[("HF_HUB_OFFLINE", "1")]));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["train  8", "valid  2", "test  2"]);
    let corpus = varattn_lab::data::hub::prepare::load_translation_corpus("wmt17-de-en", &e.data, false).unwrap();
    // source English, target German; whitespace collapsed; shards concatenated in order
    assert_eq!(corpus.train[1].src, "Two trees.");
    assert_eq!(corpus.train[1].tgt, "Zwei Bäume.");
    assert_eq!(corpus.train.len(), 8);

    // VQA 2.0: validation with images in two shards found by pattern, train without images
    let val0 = vqa_rows(10, 3, true);
    let val1 = vqa_rows(20, 2, true);
    put_cached(&e.hub_cache, "lmms-lab/VQAv2", "main", COMMIT_B, "data/validation-00000-of-00002.parquet", &vqa_bytes(&val0, true));
    put_cached(&e.hub_cache, "lmms-lab/VQAv2", "main", COMMIT_B, "data/validation-00001-of-00002.parquet", &vqa_bytes(&val1, true));
    put_cached(&e.hub_cache, "pminervini/VQAv2", "main", COMMIT_A, "data/train-00000-of-00001.parquet", &vqa_bytes(&vqa_rows(1, 4, false), false));
    let (out, err) = ok(&prepare(&e, "vqa-v2", &[("HF_HUB_OFFLINE", "1")]));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["train  4", "validation  5"], "{out}");
    assert!(err.contains("vqa-v2 validation: 5 rows") && err.contains("214354"), "{err}");
    let settings = HubSettings { endpoint: closed_port_url(), token: None, cache_dir: e.hub_cache.clone(), offline: true };
    let hub = Hub::new(settings, false).unwrap();
    let val = varattn_lab::data::hub::prepare::load_vqa_v2_with(&hub, "validation", true, false).unwrap();
    let want: Vec<VqaV2Example> = val0.iter().chain(&val1).cloned().collect();
    assert_eq!(val, want);
    assert_eq!(val[4].answers.len(), 10);
    let train = varattn_lab::data::hub::prepare::load_vqa_v2_with(&hub, "train", true, false).unwrap();
    assert!(train.iter().all(|x| x.image.is_none()) && train.len() == 4);
    let err = format!("{:#}", varattn_lab::data::hub::prepare::load_vqa_v2_with(&hub, "test", true, false).unwrap_err());
    assert!(err.contains("test") && err.contains("validation"), "{err}");
}

#[test]
fn unknown_names_list_the_hub_and_offline_sets() {
    let e = env();
    let err = failed(&prepare(&e, "wmt99-xx", &[("HF_HUB_OFFLINE", "1")]));
    for name in ["wmt99-xx", "ding-de-en", "easy-vqa", "cmudict", "iwslt14-de-en", "iwslt2017-de-en", "wmt14-de-en", "wmt16-de-en", "wmt17-de-en", "vqa-v2"] {
        assert!(err.contains(name), "{name} missing from: {err}");
    }
}

// ---------------------------------------------------------------------------
// Online: the loopback Hub

#[test]
fn download_writes_the_huggingface_hub_cache_and_follows_the_revision() {
    let hub = FakeHub::start();
    hub.repo("bbaaaa/iwslt14-de-en", COMMIT_A, &[PARQUET_REF], iwslt14_files("a"), None);
    let e = env();
    let (out, _) = ok(&prepare(&e, "iwslt14-de-en", &[("HF_ENDPOINT", hub.url.as_str())]));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["train  6", "valid  2", "test  2"]);
    let log = hub.log();
    // the endpoints hf-hub calls: HEAD and GET on resolve with the revision as one encoded segment
    let resolve = "/datasets/bbaaaa/iwslt14-de-en/resolve/refs%2Fconvert%2Fparquet/de-en/train/0000.parquet";
    assert!(log.contains(&format!("HEAD {resolve}")) && log.contains(&format!("GET {resolve}")), "{log:#?}");
    assert!(log.iter().any(|l| l.starts_with("GET /cdn/")), "{log:#?}");
    // the cache, as huggingface_hub lays it out
    let repo = e.hub_cache.join("datasets--bbaaaa--iwslt14-de-en");
    assert_eq!(std::fs::read_to_string(repo.join("refs/refs/convert/parquet")).unwrap().trim(), COMMIT_A);
    let files = iwslt14_files("a");
    for (path, bytes) in &files {
        let link = repo.join("snapshots").join(COMMIT_A).join(path);
        let target = std::fs::read_link(&link).unwrap();
        assert_eq!(target, PathBuf::from(format!("../../../../blobs/{}", sha256_hex(bytes))), "{}", link.display());
        assert_eq!(&std::fs::read(&link).unwrap(), bytes);
    }
    // the same cache serves offline, with the Hub gone
    let (out, _) = ok(&prepare(&e, "iwslt14-de-en", &[("HF_HUB_OFFLINE", "1"), ("HF_ENDPOINT", &closed_port_url())]));
    assert_eq!(out.lines().next(), Some("train  6"));
    // a second online run re-downloads nothing (etags match)
    hub.clear_log();
    ok(&prepare(&e, "iwslt14-de-en", &[("HF_ENDPOINT", &hub.url)]));
    assert!(!hub.log().iter().any(|l| l.starts_with("GET /cdn/")), "{:#?}", hub.log());
    // the ref moves to a new commit with a changed train file: new snapshot, ref updated, old one kept
    let mut files_b = iwslt14_files("a");
    files_b.insert("de-en/train/0000.parquet".into(), translation_bytes("translation", ("de", "en"), &pairs("b-train", 9)));
    hub.repo("bbaaaa/iwslt14-de-en", COMMIT_B, &[PARQUET_REF], files_b, None);
    let (out, _) = ok(&prepare(&e, "iwslt14-de-en", &[("HF_ENDPOINT", &hub.url)]));
    assert_eq!(out.lines().next(), Some("train  9"));
    assert_eq!(std::fs::read_to_string(repo.join("refs/refs/convert/parquet")).unwrap().trim(), COMMIT_B);
    assert!(repo.join("snapshots").join(COMMIT_B).join("de-en/train/0000.parquet").is_file());
    assert!(repo.join("snapshots").join(COMMIT_A).join("de-en/train/0000.parquet").is_file());
    let de = std::fs::read_to_string(e.data.join("iwslt14-de-en/train.de")).unwrap();
    assert_eq!(de.lines().next(), Some("b-train Satz Nummer 0 ist hier."));
}

#[test]
fn hf_home_alone_places_the_cache_and_pattern_shards_are_listed_through_the_tree_api() {
    let hub = FakeHub::start();
    let mut files = BTreeMap::new();
    files.insert("data/validation-00000-of-00002.parquet".to_string(), vqa_bytes(&vqa_rows(1, 2, true), true));
    files.insert("data/validation-00001-of-00002.parquet".to_string(), vqa_bytes(&vqa_rows(5, 3, true), true));
    files.insert("data/testdev-00000-of-00001.parquet".to_string(), vqa_bytes(&vqa_rows(9, 1, true), true));
    hub.repo("lmms-lab/VQAv2", COMMIT_A, &["main"], files, None);
    let mut train = BTreeMap::new();
    train.insert("data/train-00000-of-00001.parquet".to_string(), vqa_bytes(&vqa_rows(100, 4, false), false));
    hub.repo("pminervini/VQAv2", COMMIT_B, &["main"], train, None);
    let e = env();
    let mut c = Command::new(env!("CARGO_BIN_EXE_varattn"));
    c.args(["data", "prepare", "vqa-v2", "--cache"]).arg(&e.data);
    for v in ["HF_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"] {
        c.env_remove(v);
    }
    let o = c.env("HF_HOME", &e.hf_home).env("HF_ENDPOINT", &hub.url).output().unwrap();
    let (out, _) = ok(&o);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["train  4", "validation  5"]);
    assert!(hub.log().iter().any(|l| l.starts_with("GET /api/datasets/lmms-lab/VQAv2/tree/main/data")), "{:#?}", hub.log());
    // HF_HOME/hub is the cache; testdev was not asked for
    let snap = e.hf_home.join("hub/datasets--lmms-lab--VQAv2/snapshots").join(COMMIT_A).join("data");
    assert!(snap.join("validation-00001-of-00002.parquet").is_file());
    assert!(!snap.join("testdev-00000-of-00001.parquet").exists());
    assert_eq!(std::fs::read_to_string(e.hf_home.join("hub/datasets--lmms-lab--VQAv2/refs/main")).unwrap(), COMMIT_A);
}

#[test]
fn not_found_and_unauthorized_say_what_to_do() {
    let hub = FakeHub::start();
    let mut files = iwslt14_files("x");
    files.remove("de-en/test/0000.parquet");
    hub.repo("bbaaaa/iwslt14-de-en", COMMIT_A, &[PARQUET_REF], files, None);
    let e = env();
    let err = failed(&prepare(&e, "iwslt14-de-en", &[("HF_ENDPOINT", &hub.url)]));
    assert!(err.contains("404") && err.contains("de-en/test/0000.parquet") && err.contains("bbaaaa/iwslt14-de-en"), "{err}");
    // the Hub's 404 is remembered as huggingface_hub does (.no_exist), and offline says so
    let marker = e.hub_cache.join("datasets--bbaaaa--iwslt14-de-en/.no_exist").join(COMMIT_A).join("de-en/test/0000.parquet");
    assert!(marker.is_file(), "{}", marker.display());
    let err = failed(&prepare(&e, "iwslt14-de-en", &[("HF_HUB_OFFLINE", "1")]));
    assert!(err.contains("does not exist") && err.contains("de-en/test/0000.parquet"), "{err}");
    // no prepared.json after a failure: nothing claims to be complete
    assert!(!e.data.join("iwslt14-de-en/prepared.json").exists());

    // a gated repository: 401 without a token (the message names HF_TOKEN), fine with it
    hub.repo("wmt/wmt14", COMMIT_B, &["main"], wmt_files("de-en", 3), Some("hf_secret"));
    let err = failed(&prepare(&e, "wmt14-de-en", &[("HF_ENDPOINT", &hub.url)]));
    assert!(err.contains("401") && err.contains("HF_TOKEN") && err.contains("wmt/wmt14"), "{err}");
    let (out, _) = ok(&prepare(&e, "wmt14-de-en", &[("HF_ENDPOINT", &hub.url), ("HF_TOKEN", "hf_secret")]));
    assert_eq!(out.lines().collect::<Vec<_>>(), ["train  9", "valid  3", "test  3"]);
}

fn wmt_files(config: &str, rows: usize) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    for f in ["train-00000-of-00003", "train-00001-of-00003", "train-00002-of-00003", "validation-00000-of-00001", "test-00000-of-00001"] {
        m.insert(format!("{config}/{f}.parquet"), translation_bytes("translation", ("de", "en"), &pairs(f, rows)));
    }
    m
}

#[test]
fn server_errors_truncated_and_corrupt_downloads_fail_clearly() {
    let hub = FakeHub::start();
    hub.repo("bbaaaa/iwslt14-de-en", COMMIT_A, &[PARQUET_REF], iwslt14_files("t"), None);
    let e = env();
    let vars = [("HF_ENDPOINT", hub.url.as_str())];
    let train_blob = e.hub_cache.join("datasets--bbaaaa--iwslt14-de-en/snapshots").join(COMMIT_A).join("de-en/train/0000.parquet");

    hub.fault(Fault::Status(500));
    let err = failed(&prepare(&e, "iwslt14-de-en", &vars));
    assert!(err.contains("HTTP 500") && err.contains("try again later") && err.contains("HF_HUB_OFFLINE=1"), "{err}");

    hub.fault(Fault::TruncatedBody);
    let err = failed(&prepare(&e, "iwslt14-de-en", &vars));
    assert!(err.contains("de-en/train/0000.parquet") && (err.contains("cut off") || err.contains("truncated")), "{err}");
    assert!(!train_blob.exists(), "a truncated download must not land in the snapshot");

    // a short body without Content-Length looks complete to HTTP: the sha256 etag catches it
    hub.fault(Fault::ShortBodyNoLength);
    let err = failed(&prepare(&e, "iwslt14-de-en", &vars));
    assert!(err.contains("corrupt or truncated") && err.contains("sha256"), "{err}");
    assert!(!train_blob.exists());

    // a file that is not parquet (the etag matches, so it downloads fine)
    hub.fault(Fault::None);
    let mut files = iwslt14_files("t");
    files.insert("de-en/train/0000.parquet".into(), b"<html>this is not parquet</html>".to_vec());
    hub.repo("bbaaaa/iwslt14-de-en", COMMIT_A, &[PARQUET_REF], files, None);
    let err = failed(&prepare(&e, "iwslt14-de-en", &vars));
    assert!(err.contains("0000.parquet") && err.contains("not a readable parquet file"), "{err}");

    // the wrong schema: the error names the missing column
    let mut files = iwslt14_files("t");
    files.insert("de-en/train/0000.parquet".into(), translation_bytes("pair", ("de", "en"), &pairs("s", 2)));
    hub.repo("bbaaaa/iwslt14-de-en", COMMIT_B, &[PARQUET_REF], files, None);
    let err = failed(&prepare(&e, "iwslt14-de-en", &vars));
    assert!(err.contains("schema mismatch") && err.contains("`translation`") && err.contains("pair"), "{err}");
    let mut files = iwslt14_files("t");
    files.insert("de-en/train/0000.parquet".into(), translation_bytes("translation", ("de", "fr"), &pairs("s", 2)));
    hub.repo("bbaaaa/iwslt14-de-en", COMMIT_A, &[PARQUET_REF], files, None);
    let err = failed(&prepare(&e, "iwslt14-de-en", &vars));
    assert!(err.contains("schema mismatch") && err.contains("`en`"), "{err}");
}

#[test]
fn unreachable_network_says_so_and_points_to_the_offline_cache() {
    let e = env();
    let err = failed(&prepare(&e, "iwslt2017-de-en", &[("HF_ENDPOINT", &closed_port_url())]));
    assert!(err.contains("could not reach the Hub") && err.contains("HF_HUB_OFFLINE=1") && err.contains("iwslt2017-de-en/train/0000.parquet"), "{err}");
}

/// The NMT experiment reads a Hub corpus through the same path as the offline one: a smoke run
/// on a prepared iwslt14-de-en fixture trains and writes its result.
#[test]
fn nmt_trains_on_a_prepared_hub_corpus() {
    let e = env();
    let mut files = BTreeMap::new();
    for (split, n) in [("train", 40), ("validation", 6), ("test", 4)] {
        files.insert(format!("de-en/{split}/0000.parquet"), translation_bytes("translation", ("de", "en"), &pairs(split, n)));
    }
    for (p, b) in &files {
        put_cached(&e.hub_cache, "bbaaaa/iwslt14-de-en", PARQUET_REF, COMMIT_A, p, b);
    }
    ok(&prepare(&e, "iwslt14-de-en", &[("HF_HUB_OFFLINE", "1")]));
    let cfg_dir = e.data.join("configs").join("nmt");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    let root = varattn_lab::repo_root();
    std::fs::copy(root.join("configs/nmt/presets.toml"), cfg_dir.join("presets.toml")).unwrap();
    std::fs::write(cfg_dir.join("soft.toml"), "task = \"nmt\"\nalignment = \"categorical\"\nname = \"soft\"\nobjective = { kind = \"soft\" }\ndata = { corpus = \"iwslt14-de-en\", lowercase = true }\n").unwrap();
    let run = e.data.join("run");
    ok(&train_offline(&e, &cfg_dir.join("soft.toml"), &run));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap();
    assert!(r["test_ppl"].as_f64().unwrap().is_finite());
    assert!(e.data.join("iwslt14-de-en/bpe-300-lc.json").is_file());
    let translations = std::fs::read_to_string(run.join("translations.txt")).unwrap();
    // references are the lower-cased test targets of the Hub corpus
    assert!(translations.lines().next().unwrap().ends_with("test sentence number 0 is here."), "{translations}");
}

/// Deng et al.'s WMT17 English->German line through the real row files: a wmt/wmt17 fixture in
/// the Hub cache, `configs/wmt17/{soft,var-sample}.toml` trained with the smoke preset (runs under
/// runs/wmt17/), then `varattn report` writes the WMT17 table with the paper's BLEU beside ours.
#[test]
fn wmt17_line_trains_on_the_hub_corpus_and_reports_beside_the_paper() {
    let e = env();
    let subjects = ["The house", "A small tree", "My old friend", "The red car", "Her brother", "This city"];
    let verbs = [("is here", "ist hier"), ("was big", "war groß"), ("stays home", "bleibt zu Hause"), ("looks new", "sieht neu aus")];
    let de_subjects = ["Das Haus", "Ein kleiner Baum", "Mein alter Freund", "Das rote Auto", "Ihr Bruder", "Diese Stadt"];
    let rows: Vec<(String, String)> = (0..subjects.len() * verbs.len())
        .map(|i| {
            let (s, v) = (i % subjects.len(), i / subjects.len());
            (format!("{} {}.", de_subjects[s], verbs[v].1), format!("{} {}.", subjects[s], verbs[v].0))
        })
        .collect();
    let shards = ["train-00000-of-00004", "train-00001-of-00004", "train-00002-of-00004", "train-00003-of-00004"];
    for (k, f) in shards.iter().enumerate() {
        let part: Vec<_> = rows.iter().skip(k).step_by(shards.len()).cloned().collect();
        put_cached(&e.hub_cache, "wmt/wmt17", "main", COMMIT_A, &format!("de-en/{f}.parquet"), &translation_bytes("translation", ("de", "en"), &part));
    }
    for f in ["validation-00000-of-00001", "test-00000-of-00001"] {
        put_cached(&e.hub_cache, "wmt/wmt17", "main", COMMIT_A, &format!("de-en/{f}.parquet"), &translation_bytes("translation", ("de", "en"), &rows[..8]));
    }
    ok(&prepare(&e, "wmt17-de-en", &[("HF_HUB_OFFLINE", "1")]));
    let root = varattn_lab::repo_root();
    let results = e.data.join("results");
    for row in ["soft", "var-sample"] {
        let run = results.join("smoke/runs/wmt17").join(row).join("seed-3435");
        ok(&train_offline(&e, &root.join("configs/wmt17").join(format!("{row}.toml")), &run));
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap();
        assert_eq!(r["name"], row);
        assert!(r["test_ppl"].as_f64().unwrap().is_finite() && r["train_tokens_per_second"].as_f64().unwrap() > 0.0, "{r}");
        // English source, German references
        let translations = std::fs::read_to_string(run.join("translations.txt")).unwrap();
        assert!(translations.lines().next().unwrap().ends_with(&rows[0].0), "{translations}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_varattn"))
        .args(["report", "--preset", "smoke", "--results"])
        .arg(&results)
        .current_dir(root)
        .output()
        .unwrap();
    let (out, _) = ok(&o);
    let table = tables::Table::read_csv(&results.join("smoke/table-wmt17.csv")).unwrap();
    assert_eq!(table.column("row").unwrap(), ["soft", "var-sample"], "{out}");
    assert_eq!(table.column("paper BLEU").unwrap(), ["24.10", "24.98"]);
    assert_eq!(table.column("speed vs soft").unwrap()[0], "1.00");
    let md = std::fs::read_to_string(results.join("smoke/table-wmt17.md")).unwrap();
    assert!(md.contains("WMT17 English->German") && md.contains("| soft |"), "{md}");
    let claims = std::fs::read_to_string(results.join("smoke/claims-wmt17.md")).unwrap();
    assert!(claims.contains("BLEU(var-sample) > BLEU(soft)"), "{claims}");
}
