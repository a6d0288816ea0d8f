//! `nix-prefetch-url` (the Dart `nix-infra-dev-mcp`'s tool): the sha256 of
//! a URL's content as Nix writes it (nix32, SRI or hex), or with `unpack`
//! the hash of the unpacked tarball's NAR serialisation, as
//! `nix-prefetch-url --unpack` gives it for `fetchTarball`/`fetchFromGitHub`;
//! `verify` compares with an expected hash, `convert` changes a hash's
//! format without any download.

use crate::Mcp;
use crate::reply::{ok, refused, unavailable};
use base64::Engine as _;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// Nix's base-32 alphabet (no e, o, u, t).
const NIX32: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";
/// The most a download may be, and the most an archive may unpack to.
const DOWNLOAD_LIMIT: u64 = 512 << 20;

#[derive(Deserialize, schemars::JsonSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    /// Nix's base 32 (`nix-prefetch-url`'s output).
    Nix32,
    /// `sha256-<base64>`, as `hash = "…"` takes it.
    Sri,
    /// Hexadecimal.
    Hex,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Operation {
    /// Download `url` and hash it.
    Hash,
    /// Download `url` and compare with `expected_hash`.
    Verify,
    /// Change `hash` from `from_format` to `format`; no download.
    Convert,
}

#[derive(Deserialize, schemars::JsonSchema)]
pub(crate) struct PrefetchArgs {
    /// hash (the default), verify or convert.
    #[serde(default)]
    operation: Option<Operation>,
    /// The URL to download (hash, verify).
    #[serde(default)]
    url: Option<String>,
    /// The format to answer in (default nix32).
    #[serde(default)]
    format: Option<Format>,
    /// verify: the hash to compare with, in any of the three formats.
    #[serde(default)]
    expected_hash: Option<String>,
    /// convert: the hash to convert.
    #[serde(default)]
    hash: Option<String>,
    /// convert: the format `hash` is in.
    #[serde(default)]
    from_format: Option<Format>,
    /// Hash the unpacked archive (a .tar.gz, .tgz or GitHub /archive/ URL),
    /// its single top folder stripped, as `nix-prefetch-url --unpack`.
    #[serde(default)]
    unpack: bool,
}

/// `bytes` in Nix's base 32.
pub(crate) fn nix32(bytes: &[u8]) -> String {
    let len = (bytes.len() * 8).div_ceil(5);
    (0..len)
        .rev()
        .map(|n| {
            let (i, j) = (n * 5 / 8, n * 5 % 8);
            let lo = u32::from(bytes[i]) >> j;
            let hi = bytes.get(i + 1).map_or(0, |b| u32::from(*b) << (8 - j));
            NIX32[((lo | hi) & 0x1f) as usize] as char
        })
        .collect()
}

/// A sha256 in Nix's base 32 back to its bytes.
pub(crate) fn from_nix32(s: &str) -> Result<Vec<u8>, String> {
    let size = 32;
    if s.len() != (size * 8usize).div_ceil(5) {
        return Err(format!("{s}: a sha256 in nix32 has 52 characters"));
    }
    let mut out = vec![0u8; size];
    for (k, c) in s.bytes().rev().enumerate() {
        let d = NIX32
            .iter()
            .position(|a| *a == c)
            .ok_or_else(|| format!("{s}: `{}` is not a nix32 digit", c as char))?;
        let (i, j) = (k * 5 / 8, k * 5 % 8);
        out[i] |= (d << j) as u8;
        let carry = (d as u32) >> (8 - j);
        if i + 1 < size {
            out[i + 1] |= carry as u8;
        } else if carry != 0 {
            return Err(format!("{s}: not a sha256"));
        }
    }
    Ok(out)
}

fn decode(hash: &str, from: Format) -> Result<Vec<u8>, String> {
    let h = hash.trim();
    let bytes = match from {
        Format::Nix32 => from_nix32(h)?,
        Format::Hex => (0..h.len())
            .step_by(2)
            .map(|k| h.get(k..k + 2).and_then(|d| u8::from_str_radix(d, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| format!("{h}: not hexadecimal"))?,
        Format::Sri => base64::engine::general_purpose::STANDARD
            .decode(h.strip_prefix("sha256-").unwrap_or(h))
            .map_err(|e| format!("{h}: {e}"))?,
    };
    if bytes.len() == 32 {
        Ok(bytes)
    } else {
        Err(format!("{h}: not a sha256 ({} bytes)", bytes.len()))
    }
}

fn all_formats(d: &[u8]) -> Value {
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    let sri = format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(d)
    );
    json!({"nix32": nix32(d), "sri": sri, "hex": hex})
}

fn pick(all: &Value, f: Format) -> Value {
    all[match f {
        Format::Nix32 => "nix32",
        Format::Sri => "sri",
        Format::Hex => "hex",
    }]
    .clone()
}

/// The NAR serialisation of `p`, written to `out` (Nix's archive format:
/// padded strings; regular files with their executable bit, symlinks and
/// directories with entries sorted by name).
pub(crate) fn nar(p: &Path, out: &mut impl Write) -> std::io::Result<()> {
    fn s(out: &mut impl Write, b: &[u8]) -> std::io::Result<()> {
        out.write_all(&(b.len() as u64).to_le_bytes())?;
        out.write_all(b)?;
        out.write_all(&[0u8; 8][..(8 - b.len() % 8) % 8])
    }
    fn node(p: &Path, out: &mut impl Write) -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::symlink_metadata(p)?;
        s(out, b"(")?;
        s(out, b"type")?;
        if meta.file_type().is_symlink() {
            s(out, b"symlink")?;
            s(out, b"target")?;
            s(out, std::fs::read_link(p)?.as_os_str().as_encoded_bytes())?;
        } else if meta.is_dir() {
            s(out, b"directory")?;
            let mut names: Vec<_> = std::fs::read_dir(p)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
            for n in names {
                s(out, b"entry")?;
                s(out, b"(")?;
                s(out, b"name")?;
                s(out, n.as_encoded_bytes())?;
                s(out, b"node")?;
                node(&p.join(&n), out)?;
                s(out, b")")?;
            }
        } else {
            s(out, b"regular")?;
            if meta.permissions().mode() & 0o100 != 0 {
                s(out, b"executable")?;
                s(out, b"")?;
            }
            s(out, b"contents")?;
            s(out, &std::fs::read(p)?)?;
        }
        s(out, b")")
    }
    s(out, b"nix-archive-1")?;
    node(p, out)
}

/// A Write that hashes.
struct Hasher(Sha256);

impl Write for Hasher {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.update(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The sha256 of an unpacked .tar.gz, its one top folder stripped.
fn unpacked_hash(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    archive.set_preserve_permissions(true);
    archive
        .unpack(dir.path())
        .map_err(|e| format!("cannot unpack: {e}"))?;
    let top: Vec<_> = std::fs::read_dir(dir.path())
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .collect();
    let root = match top.as_slice() {
        [one] if one.path().is_dir() => one.path(),
        _ => dir.path().to_path_buf(),
    };
    let mut h = Hasher(Sha256::new());
    nar(&root, &mut h).map_err(|e| e.to_string())?;
    Ok(h.0.finalize().to_vec())
}

async fn download(url: &str) -> Result<Vec<u8>, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url}: only http and https URLs are fetched"));
    }
    let mut resp = reqwest::get(parsed).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    let too_big = || format!("{url}: larger than {} MiB", DOWNLOAD_LIMIT >> 20);
    if resp.content_length().is_some_and(|n| n > DOWNLOAD_LIMIT) {
        return Err(too_big());
    }
    // Counted as it comes: a server may send no length, or another one.
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > DOWNLOAD_LIMIT {
            return Err(too_big());
        }
    }
    Ok(body)
}

async fn url_hash(url: &str, unpack: bool) -> Result<Vec<u8>, String> {
    let bytes = download(url).await?;
    let digest = if unpack {
        let archive = url.ends_with(".tar.gz")
            || url.ends_with(".tgz")
            || (url.contains("github.com") && url.contains("/archive/"));
        if !archive {
            return Err(format!(
                "{url}: unpack takes a .tar.gz or .tgz URL (or GitHub's /archive/…)"
            ));
        }
        tokio::task::spawn_blocking(move || unpacked_hash(&bytes))
            .await
            .map_err(|e| e.to_string())??
    } else {
        Sha256::digest(&bytes).to_vec()
    };
    Ok(digest)
}

#[tool_router(router = dev_tools, vis = "pub(crate)")]
impl Mcp {
    #[tool(
        name = "nix-prefetch-url",
        description = "The sha256 of a URL's content as Nix wants it for fetchurl (or, with unpack, for \
            fetchTarball/fetchFromGitHub), in nix32, SRI or hex; verify an expected hash; or convert \
            a hash between formats without downloading.",
        annotations(read_only_hint = true, open_world_hint = true)
    )]
    async fn nix_prefetch_url(&self, Parameters(a): Parameters<PrefetchArgs>) -> CallToolResult {
        let format = a.format.unwrap_or(Format::Nix32);
        match a.operation.unwrap_or(Operation::Hash) {
            Operation::Convert => {
                let (Some(hash), Some(from)) = (a.hash.as_deref(), a.from_format) else {
                    return refused("convert needs hash and from_format");
                };
                match decode(hash, from) {
                    Ok(d) => {
                        let all = all_formats(&d);
                        ok(json!({"input": hash, "output": pick(&all, format), "all_formats": all}))
                    }
                    Err(e) => refused(e),
                }
            }
            op => {
                let Some(url) = a.url.as_deref() else {
                    return refused("hash and verify need a url");
                };
                let digest = match url_hash(url, a.unpack).await {
                    Ok(d) => d,
                    Err(e) => return unavailable(e),
                };
                let all = all_formats(&digest);
                let mut v = json!({"url": url, "unpack": a.unpack, "hash": pick(&all, format), "all_formats": all});
                if matches!(op, Operation::Verify) {
                    let Some(expected) = a.expected_hash.as_deref() else {
                        return refused("verify needs expected_hash");
                    };
                    let matches = [Format::Nix32, Format::Sri, Format::Hex]
                        .iter()
                        .any(|f| decode(expected, *f).is_ok_and(|d| d == digest));
                    v["expected_hash"] = json!(expected);
                    v["matches"] = json!(matches);
                }
                ok(v)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nix32_reads_back_and_matches_nix_for_the_empty_string() {
        let d = Sha256::digest(b"");
        // `nix-hash --type sha256 --to-base32 e3b0c442…b855`.
        assert_eq!(
            nix32(&d),
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73"
        );
        assert_eq!(from_nix32(&nix32(&d)).unwrap(), d.to_vec());
        for f in [Format::Nix32, Format::Sri, Format::Hex] {
            let all = all_formats(&d);
            assert_eq!(
                decode(pick(&all, f).as_str().unwrap(), f).unwrap(),
                d.to_vec()
            );
        }
        assert!(
            from_nix32("e".repeat(52).as_str())
                .unwrap_err()
                .contains("not a nix32 digit")
        );
    }
}

/// Nix's own test vectors (its tests/hash.sh).
#[cfg(test)]
mod vectors {
    use super::*;

    #[test]
    fn sha256_of_abc_in_nix32_and_sri() {
        let abc = all_formats(&Sha256::digest(b"abc"));
        assert_eq!(
            abc["nix32"],
            "1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s"
        );
        assert_eq!(
            abc["sri"],
            "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    fn nar_md5(p: &Path) -> String {
        use md5::Digest as _;
        let mut out = Vec::new();
        nar(p, &mut out).unwrap();
        md5::Md5::digest(&out)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn nar_of_a_file_its_execute_bit_and_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        // `nix-hash --type md5 DIR`.
        let d = tempfile::tempdir().unwrap();
        let hello = d.path().join("hello");
        std::fs::write(&hello, "Hello World\n").unwrap();
        std::fs::set_permissions(&hello, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(nar_md5(d.path()), "ea9b55537dd4c7e104515b2ccfaf4100");
        std::fs::set_permissions(&hello, std::fs::Permissions::from_mode(0o744)).unwrap();
        assert_eq!(nar_md5(d.path()), "20f3ffe011d4cfa7d72bfabef7882836");
        std::fs::remove_file(&hello).unwrap();
        std::os::unix::fs::symlink("x", &hello).unwrap();
        assert_eq!(nar_md5(d.path()), "f78b733a68f5edbdf9413899339eaa4a");
    }
}
