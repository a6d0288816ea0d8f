//! The cluster repo's configuration files, read-only: the folders and files
//! the Dart nix-infra lets its agents read (`nodes`, `node_types`,
//! `modules`, `app_modules`, `__test__`, `cli`, `configuration.nix`,
//! `flake.nix`), and nothing else: no env file, key, certificate or secret.
//!
//! A path is checked by its components, relative to the repo (never to the
//! process's directory): no absolute path, no `..`, no hidden component,
//! the first component one of [`CONFIG_ROOTS`]; and where it leads once
//! links are followed must still be inside the repo.

use crate::cluster::ClusterError;
use serde::Serialize;
use std::path::{Component, Path, PathBuf};

/// The repo entries an agent may read.
pub const CONFIG_ROOTS: [&str; 8] = [
    "nodes",
    "node_types",
    "modules",
    "app_modules",
    "__test__",
    "cli",
    "configuration.nix",
    "flake.nix",
];

/// The most lines a search returns.
const SEARCH_LIMIT: usize = 500;

/// A cluster repo's configuration, read-only.
#[derive(Clone, Debug)]
pub struct RepoFiles {
    root: PathBuf,
}

/// One entry of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The path, relative to the repo.
    pub path: String,
    /// `file`, `directory` or `link`.
    pub kind: &'static str,
    /// Its size in bytes.
    pub size: u64,
}

/// A line a search found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Hit {
    /// The file, relative to the repo.
    pub file: String,
    /// The line number, from 1.
    pub line: usize,
    /// The line, trimmed.
    pub content: String,
}

fn refused(m: impl Into<String>) -> ClusterError {
    ClusterError::Refused(m.into())
}

impl RepoFiles {
    /// The configuration of the repo at `root`.
    pub fn new(root: &Path) -> RepoFiles {
        RepoFiles {
            root: root.to_path_buf(),
        }
    }

    /// The checked location of `path` (`.` or empty: the repo itself).
    pub fn resolve(&self, path: &str) -> Result<PathBuf, ClusterError> {
        let path = path.trim();
        if path.is_empty() || path == "." {
            return Ok(self.root.clone());
        }
        let parts = config_parts(path, Path::new(path))?;
        let full = self.root.join(parts.join("/"));
        let (Ok(real), Ok(root)) = (full.canonicalize(), self.root.canonicalize()) else {
            return Err(refused(format!(
                "{path}: no such file or folder in the cluster repo"
            )));
        };
        // Where a link leads must pass the same checks.
        match real.strip_prefix(&root) {
            Ok(inside) => config_parts(path, inside).map_err(|_| {
                refused(format!(
                    "{path}: leads to {}, which is not a configuration path",
                    inside.display()
                ))
            })?,
            Err(_) => return Err(refused(format!("{path}: leads outside the cluster repo"))),
        };
        Ok(full)
    }

    fn relative(&self, p: &Path) -> String {
        p.strip_prefix(&self.root)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    }

    /// Every entry under `path`, breadth first; the repo itself lists the
    /// configuration roots it has. Hidden entries are left out.
    pub fn list(&self, path: &str) -> Result<Vec<Entry>, ClusterError> {
        let start = self.resolve(path)?;
        let mut queue: Vec<PathBuf> = if start == self.root {
            CONFIG_ROOTS
                .iter()
                .map(|r| self.root.join(r))
                .filter(|p| p.exists())
                .collect()
        } else {
            vec![start]
        };
        let mut out = Vec::new();
        let mut k = 0;
        while k < queue.len() {
            let p = queue[k].clone();
            k += 1;
            let meta = std::fs::symlink_metadata(&p).map_err(|e| unreadable(&p, e))?;
            let kind = if meta.file_type().is_symlink() {
                "link"
            } else if meta.is_dir() {
                "directory"
            } else {
                "file"
            };
            out.push(Entry {
                path: self.relative(&p),
                kind,
                size: meta.len(),
            });
            if meta.is_dir() {
                let mut children: Vec<PathBuf> = std::fs::read_dir(&p)
                    .map_err(|e| unreadable(&p, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|c| {
                        !c.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                    })
                    .collect();
                children.sort();
                queue.extend(children);
            }
        }
        Ok(out)
    }

    /// The text of a file.
    pub fn read(&self, path: &str) -> Result<String, ClusterError> {
        let p = self.resolve(path)?;
        if p.is_dir() {
            return Err(refused(format!("{path} is a folder: list it instead")));
        }
        let bytes = std::fs::read(&p).map_err(|e| unreadable(&p, e))?;
        let text =
            String::from_utf8(bytes).map_err(|_| refused(format!("{path} is not UTF-8 text")))?;
        Ok(text.replace("\r\n", "\n").replace('\r', "\n"))
    }

    /// Every file (not folder) under the configuration roots.
    pub fn files(&self) -> Vec<String> {
        self.list(".")
            .map(|l| {
                l.into_iter()
                    .filter(|e| e.kind == "file")
                    .map(|e| e.path)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The lines matching `pattern` (a regular expression) in the files
    /// under `path` whose name matches `file_glob` (`*` and `?`).
    pub fn search(
        &self,
        pattern: &str,
        path: &str,
        file_glob: Option<&str>,
        case_sensitive: bool,
    ) -> Result<Vec<Hit>, ClusterError> {
        let re = regex::RegexBuilder::new(pattern)
            .case_insensitive(!case_sensitive)
            .build()
            .map_err(|e| refused(format!("pattern: {e}")))?;
        let mut hits = Vec::new();
        for e in self.list(path)?.into_iter().filter(|e| e.kind == "file") {
            let name = e.path.rsplit('/').next().unwrap_or(&e.path);
            if file_glob.is_some_and(|g| !glob(g, name)) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(self.root.join(&e.path)) else {
                continue;
            };
            for (k, line) in text.lines().enumerate().filter(|(_, l)| re.is_match(l)) {
                hits.push(Hit {
                    file: e.path.clone(),
                    line: k + 1,
                    content: line.trim().to_string(),
                });
                if hits.len() == SEARCH_LIMIT {
                    return Ok(hits);
                }
            }
        }
        Ok(hits)
    }
}

/// The components of `p` (given as `path`), when it is a configuration
/// path: relative, no `..`, nothing hidden, under one of [`CONFIG_ROOTS`].
fn config_parts(path: &str, p: &Path) -> Result<Vec<String>, ClusterError> {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => {
                let s = s.to_string_lossy();
                if s.starts_with('.') {
                    return Err(refused(format!(
                        "{path}: hidden files and folders are not readable"
                    )));
                }
                parts.push(s.into_owned());
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(refused(format!("{path}: `..` is not allowed"))),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refused(format!(
                    "{path}: give a path relative to the cluster repo"
                )));
            }
        }
    }
    if !parts
        .first()
        .is_some_and(|f| CONFIG_ROOTS.contains(&f.as_str()))
    {
        return Err(refused(format!(
            "{path}: not a configuration path (readable: {})",
            CONFIG_ROOTS.join(", ")
        )));
    }
    Ok(parts)
}

fn unreadable(p: &Path, e: std::io::Error) -> ClusterError {
    ClusterError::Unavailable(format!("{}: {e}", p.display()))
}

/// Whether `name` matches `pattern`, with `*` any run of characters and `?` one.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> (tempfile::TempDir, RepoFiles) {
        let d = tempfile::tempdir().unwrap();
        let w = |p: &str, t: &str| {
            let f = d.path().join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, t).unwrap();
        };
        w("nodes/ctrl1.nix", "{ etcd = true; }\r\n# Etcd\n");
        w("nodes/.hidden.nix", "x");
        w("modules/etcd.nix", "services.etcd.enable = true;\n");
        w(".env", "SECRETS_PASS=hunter2\n");
        w("secrets/db", "x");
        w("nodes_x/a.nix", "x");
        std::os::unix::fs::symlink(d.path().join(".env"), d.path().join("nodes/env.nix")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("modules/host.nix")).unwrap();
        let r = RepoFiles::new(d.path());
        (d, r)
    }

    #[test]
    fn only_configuration_paths_resolve_and_each_refusal_says_why() {
        let (_d, r) = repo();
        assert_eq!(
            r.read("nodes/ctrl1.nix").unwrap(),
            "{ etcd = true; }\n# Etcd\n"
        );
        for (p, why) in [
            (".env", "hidden"),
            ("nodes/.hidden.nix", "hidden"),
            ("secrets/db", "not a configuration path"),
            ("nodes_x/a.nix", "not a configuration path"),
            ("nodes/../.env", "`..`"),
            ("/etc/passwd", "relative"),
            ("nodes/env.nix", "leads to .env"),
            ("modules/host.nix", "outside"),
            ("nodes/none.nix", "no such file"),
        ] {
            let e = r.read(p).unwrap_err().to_string();
            assert!(e.contains(why), "{p}: {e}");
        }
    }

    #[test]
    fn listing_the_repo_shows_the_roots_and_never_a_hidden_entry() {
        let (_d, r) = repo();
        let paths: Vec<String> = r.list(".").unwrap().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "nodes",
                "modules",
                "nodes/ctrl1.nix",
                "nodes/env.nix",
                "modules/etcd.nix",
                "modules/host.nix"
            ]
        );
        assert_eq!(r.files(), ["nodes/ctrl1.nix", "modules/etcd.nix"]);
    }

    #[test]
    fn search_matches_lines_by_regex_and_files_by_glob() {
        let (_d, r) = repo();
        let hits = r.search("etcd", ".", Some("*.nix"), false).unwrap();
        let at: Vec<(String, usize)> = hits.iter().map(|h| (h.file.clone(), h.line)).collect();
        assert_eq!(
            at,
            [
                ("nodes/ctrl1.nix".into(), 1),
                ("nodes/ctrl1.nix".into(), 2),
                ("modules/etcd.nix".into(), 1)
            ]
        );
        assert_eq!(r.search("etcd", "nodes", None, true).unwrap().len(), 1);
        assert!(
            r.search("(", ".", None, true)
                .unwrap_err()
                .to_string()
                .contains("pattern")
        );
        assert!(glob("*.nix", "a.nix") && !glob("*.nix", "a.nixx") && glob("c?l", "cxl"));
    }
}
